package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// healthcheckTimeout bounds the whole check: connecting, sending the
// request and reading the answer.
const healthcheckTimeout = 2 * time.Second

// Healthcheck is `presenced healthcheck [--addr host:port]`: it asks the
// node of this machine for GET /readyz and returns the exit status: 0 when
// the node answers 200 within 2 s, 1 otherwise, after one line on stderr.
// The address is the node's own (--addr, else PRESENCE_ADDR, else :8080);
// an unspecified host (":8080", "0.0.0.0:8080", "[::]:8080") is asked on
// 127.0.0.1. It needs no shell and no curl, so the distroless image can run
// it as a Docker health check.
func Healthcheck(ctx context.Context, args []string, lookupEnv func(string) (string, bool), stderr io.Writer) int {
	fail := func(err error) int {
		fmt.Fprintln(stderr, "presenced healthcheck:", oneLine(err.Error()))
		return 1
	}
	fs := flag.NewFlagSet("presenced healthcheck", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported in one line, below
	flagAddr := fs.String("addr", "", "the node's listen address (env PRESENCE_ADDR, default \":8080\")")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(stderr, "Usage: presenced healthcheck [--addr host:port]\n\nExits 0 when the node answers GET /readyz with 200 within 2 s, 1 otherwise.")
			fs.SetOutput(stderr)
			fs.PrintDefaults()
			return 0
		}
		return fail(err)
	}
	if fs.NArg() > 0 {
		return fail(fmt.Errorf("unexpected arguments: %v", fs.Args()))
	}
	addr := settingDefault("PRESENCE_ADDR")
	if v, ok := lookupEnv("PRESENCE_ADDR"); ok {
		addr = v
	}
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "addr" {
			addr = *flagAddr
		}
	})

	url, err := readyURL(addr)
	if err != nil {
		return fail(err)
	}
	ctx, cancel := context.WithTimeout(ctx, healthcheckTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fail(err)
	}
	// No proxy from the environment, no connection kept: one request to
	// the node itself.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	res, err := client.Do(req)
	if err != nil {
		return fail(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(res.Body, 4<<10))
	if res.StatusCode != http.StatusOK {
		msg := fmt.Sprintf("GET %s: %s", url, res.Status)
		var e struct {
			Error struct{ Message string } `json:"error"`
		}
		if json.Unmarshal(body, &e) == nil && e.Error.Message != "" {
			msg += " (" + e.Error.Message + ")"
		}
		return fail(errors.New(msg))
	}
	return 0
}

// readyURL returns the URL of /readyz on a node that listens on addr.
func readyURL(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("PRESENCE_ADDR %q: %w", addr, err)
	}
	if port == "" || port == "0" {
		return "", fmt.Errorf("PRESENCE_ADDR %q: no fixed port to check", addr)
	}
	// Go listens on both IPv4 and IPv6 for "" and "::", so 127.0.0.1
	// reaches any unspecified address.
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port) + "/readyz", nil
}

// settingDefault returns the default of a setting of the node.
func settingDefault(env string) string {
	for _, s := range settings {
		if s.env == env {
			return s.def
		}
	}
	return ""
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
