package main

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/presencecluster/presence/pkg/redistest"
	"github.com/presencecluster/presence/pkg/webhooktest"
)

const webhookSecret = "presenced-webhook-secret-0123"

func startReceiver(t *testing.T, status func(int) int) *webhooktest.Receiver {
	t.Helper()
	r := &webhooktest.Receiver{Secret: webhookSecret, Status: status}
	if err := r.Start(nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

// A bad webhook setting stops the node at start, and the error names it.
func TestWebhookConfig(t *testing.T) {
	ok := map[string]string{"PRESENCE_WEBHOOK_URL": "https://hooks.example/presence", "PRESENCE_WEBHOOK_SECRET": "0123456789abcdef"}
	c, err := ParseConfig(nil, lookup(ok), io.Discard)
	if err != nil || c.WebhookURL != ok["PRESENCE_WEBHOOK_URL"] || strings.Join(c.WebhookEvents, ",") != "join,leave" || c.WebhookMaxAge != time.Hour {
		t.Fatalf("config %+v, %v", c, err)
	}
	c, err = ParseConfig([]string{"--webhook-events", "update, remove,join,leave", "--webhook-max-age", "10s"}, lookup(ok), io.Discard)
	if err != nil || len(c.WebhookEvents) != 4 || c.WebhookMaxAge != 10*time.Second {
		t.Fatalf("config %+v, %v", c, err)
	}
	with := func(k, v string) map[string]string {
		env := map[string]string{}
		for k, v := range ok {
			env[k] = v
		}
		if v == "-" {
			delete(env, k)
		} else {
			env[k] = v
		}
		return env
	}
	for _, bad := range []struct {
		env     map[string]string
		setting string
	}{
		{with("PRESENCE_WEBHOOK_SECRET", "-"), "PRESENCE_WEBHOOK_SECRET"},
		{with("PRESENCE_WEBHOOK_SECRET", "short-secret"), "PRESENCE_WEBHOOK_SECRET"},
		{with("PRESENCE_WEBHOOK_URL", "ftp://hooks.example/"), "PRESENCE_WEBHOOK_URL"},
		{with("PRESENCE_WEBHOOK_URL", "hooks.example/presence"), "PRESENCE_WEBHOOK_URL"},
		{with("PRESENCE_WEBHOOK_URL", "http://"), "PRESENCE_WEBHOOK_URL"},
		{with("PRESENCE_WEBHOOK_EVENTS", "join,typing"), "PRESENCE_WEBHOOK_EVENTS"},
		{with("PRESENCE_WEBHOOK_EVENTS", ""), "PRESENCE_WEBHOOK_EVENTS"},
		{with("PRESENCE_WEBHOOK_MAX_AGE", "soon"), "PRESENCE_WEBHOOK_MAX_AGE"},
		{with("PRESENCE_WEBHOOK_MAX_AGE", "0s"), "PRESENCE_WEBHOOK_MAX_AGE"},
	} {
		if _, err := ParseConfig(nil, lookup(bad.env), io.Discard); err == nil || !strings.Contains(err.Error(), bad.setting) {
			t.Errorf("%v: error %v, want one naming %s", bad.env, err, bad.setting)
		}
	}
	// Off: the secret alone is ignored.
	if _, err := ParseConfig(nil, lookup(map[string]string{"PRESENCE_WEBHOOK_SECRET": "x"}), io.Discard); err != nil {
		t.Errorf("secret without URL: %v", err)
	}
}

// hookEnv is a node's environment with webhooks to r.
func hookEnv(r *webhooktest.Receiver, env map[string]string) map[string]string {
	env["PRESENCE_WEBHOOK_URL"] = r.URL()
	env["PRESENCE_WEBHOOK_SECRET"] = webhookSecret
	return env
}

// A join and a leave through the node reach the receiver: on the embedded
// store and under Sentinel, with the metrics the README lists.
func TestWebhookMain(t *testing.T) {
	primary := redistest.Start(t)
	redistest.StartReplica(t, primary)
	sentinels := redistest.StartSentinels(t, primary, "presence", 1)
	for name, env := range map[string]map[string]string{
		"embedded": {},
		"sentinel": {"PRESENCE_REDIS_SENTINEL_ADDRS": strings.Join(sentinels, ","), "PRESENCE_REDIS_SENTINEL_MASTER": "presence"},
	} {
		t.Run(name, func(t *testing.T) {
			rec := startReceiver(t, nil)
			m := MustRunMain(t, hookEnv(rec, env))
			base := "http://" + m.Addr()
			out := post(t, base+"/v1/heartbeat", `{"roomId":"lobby","sessionId":"s1","userId":"ada"}`)
			res, err := http.Post(base+"/v1/disconnect", "text/plain", strings.NewReader(out["sessionToken"].(string)))
			if err != nil || res.StatusCode != 204 {
				t.Fatalf("disconnect: %v %v", res, err)
			}
			res.Body.Close()
			waitFor(t, "two events", 10*time.Second, func() bool { return rec.Distinct() == 2 })
			rooms, problems := rec.Verify(false)
			if len(problems) > 0 || len(rooms["lobby"]) != 2 || rooms["lobby"][0].Event != "join" || rooms["lobby"][1].Event != "leave" {
				t.Fatalf("events %+v %v", rooms, problems)
			}
			waitFor(t, "the metrics", 10*time.Second, func() bool {
				_, body := get(t, base+"/metrics")
				return strings.Contains(body, `presence_webhook_events_total{result="delivered"} 2`) &&
					strings.Contains(body, "presence_webhook_backlog 0")
			})
		})
	}
}

// kill -9 of the node that caused the events and was sending them loses
// nothing: another node sends them once the dead node's claim ends, with
// the same ids.
func TestWebhookSenderKilled(t *testing.T) {
	srv := redistest.Start(t)
	rec := startReceiver(t, func(n int) int {
		if n == 1 {
			return webhooktest.Hang
		}
		return 0
	})
	env := func() map[string]string {
		return hookEnv(rec, map[string]string{"PRESENCE_REDIS_URL": srv.URL(), "PRESENCE_TOKEN_SECRET": "webhook-kill-secret-0123456789"})
	}
	a := startProc(t, "a", env())
	const users = 20
	for i := 0; i < users; i++ {
		body := fmt.Sprintf(`{"roomId":"room-%d","sessionId":"s","userId":"u%d"}`, i%4, i)
		out := post(t, a.url()+"/v1/heartbeat", body)
		res, err := http.Post(a.url()+"/v1/disconnect", "text/plain", strings.NewReader(out["sessionToken"].(string)))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
	}
	waitFor(t, "a's first request", 10*time.Second, func() bool { return len(rec.Arrivals()) >= 1 })
	a.kill()
	killed := time.Now()
	b := startProc(t, "b", env())
	waitFor(t, "every event, sent by b", 40*time.Second, func() bool { return rec.Distinct() == 2*users })
	t.Logf("all %d events %v after the kill", 2*users, time.Since(killed).Round(time.Millisecond))
	rooms, problems := rec.Verify(true)
	for _, p := range problems {
		t.Error(p)
	}
	for room, evs := range rooms {
		if len(evs) != 2*users/4 {
			t.Errorf("room %s: %d events", room, len(evs))
		}
	}
	// The events of a's request that got no answer came again, same ids.
	acked := map[string]bool{}
	for _, e := range rec.Events() {
		acked[e.ID] = true
	}
	for _, e := range rec.All() {
		if !acked[e.ID] {
			t.Errorf("event %s (%s v%d) sent, never acknowledged", e.ID, e.RoomID, e.Version)
		}
	}
	if v := b.metric(t, "presence_webhook_backlog"); v < 0 {
		t.Errorf("backlog %v", v)
	}
}
