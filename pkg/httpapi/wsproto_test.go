package httpapi

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/presencecluster/presence/pkg/presence"
)

func TestDecodeClientMessage(t *testing.T) {
	for _, tc := range []struct {
		in, code string
		id       string
	}{
		{`{"type":"join","id":1,"roomId":"r","sessionId":"s"}`, "", "1"},
		{`{"type":"ping","id":"abc"}`, "", `"abc"`},
		{`{"type":"ping"}`, "", ""},
		{`  {"type":"watch","roomToken":"x"}  `, "", ""},
		{`[]`, presence.EINVALID, ""},
		{`"join"`, presence.EINVALID, ""},
		{``, presence.EINVALID, ""},
		{`{"type":"join"`, presence.EINVALID, ""},
		{`{"type":"fly","id":7}`, presence.EINVALID, "7"},
		{`{"type":"join","id":8,"roomId":5}`, presence.EINVALID, "8"},
		{`{"type":"join","id":{},"roomId":"r"}`, presence.EINVALID, ""},
		{`{"type":"join","id":true}`, presence.EINVALID, ""},
		{`{"type":"join","interval":"10"}`, presence.EINVALID, ""},
	} {
		m, err := decodeClientMessage([]byte(tc.in))
		if presence.ErrorCode(err) != tc.code {
			t.Errorf("%s: err %v, want code %q", tc.in, err, tc.code)
		}
		var id string
		if m != nil {
			id = string(m.ID)
		}
		if id != tc.id {
			t.Errorf("%s: id %q, want %q", tc.in, id, tc.id)
		}
	}
}

// FuzzDecodeClientMessage: the decoder never panics, refuses with a coded
// EINVALID, and accepts only known types with a valid id.
func FuzzDecodeClientMessage(f *testing.F) {
	for _, s := range []string{
		`{"type":"join","id":1,"roomId":"lobby","sessionId":"tab-1","interval":10000,"data":{"a":[1,2]}}`,
		`{"type":"leave","id":"x","roomId":"lobby"}`,
		`{"type":"update","id":3,"roomId":"lobby","data":null}`,
		`{"type":"watch","id":4,"roomToken":"cgdkZWZhdWx0"}`,
		`{"type":"unwatch","id":5,"roomId":"lobby"}`,
		`{"type":"ping","id":6}`,
		`{"type":"join","id":1e400}`, `{"type":"ping","id":-0.5}`, `{"id":"\ud800"}`, `{}`, `[`, `{"type":"join","roomId":"\u0000{"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeClientMessage(b)
		if err != nil {
			if presence.ErrorCode(err) != presence.EINVALID {
				t.Fatalf("error %v is not invalid_argument", err)
			}
			if m != nil && !utf8.Valid(m.ID) {
				t.Fatalf("an error would echo the id %q", m.ID)
			}
			return
		}
		// What is accepted reaches text frames and ids: nothing may have
		// been replaced on the way (two spellings, one id).
		if !utf8.Valid(b) {
			t.Fatalf("accepted invalid UTF-8 %q", b)
		}
		if lower := strings.ToLower(string(b)); !strings.Contains(lower, `\ufffd`) && !strings.ContainsRune(lower, utf8.RuneError) {
			for _, f := range []string{m.Type, m.RoomID, m.SessionID, m.UserID, m.Name, m.Image, m.RoomToken} {
				if strings.ContainsRune(f, utf8.RuneError) {
					t.Fatalf("accepted %q, decoded with a replacement character: %q", b, f)
				}
			}
		}
		if !clientTypes[m.Type] {
			t.Fatalf("accepted type %q", m.Type)
		}
		if len(m.ID) > 0 && !json.Valid(m.ID) {
			t.Fatalf("accepted id %q", m.ID)
		}
	})
}
