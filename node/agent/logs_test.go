package agent

import (
	"errors"
	"testing"
)

func TestCheckHostPort(t *testing.T) {
	for _, tc := range []struct {
		addr string
		ok   bool
	}{
		{"127.0.0.1:7001", true},
		{"[::1]:7001", true},
		{"node-3.example.org:7001", true},
		{"127.0.0.1:19999/secret?", false},
		{"127.0.0.1:19999?x", false},
		{"user@127.0.0.1:19999", false},
		{"http://127.0.0.1:19999", false},
		{"127.0.0.1", false},
		{":7001", false},
		{"127.0.0.1:0", false},
		{"127.0.0.1:http", false},
		{"127.0.0.1:70000", false},
		{"", false},
	} {
		err := checkHostPort(tc.addr)
		if (err == nil) != tc.ok || err != nil && !errors.Is(err, errBadAddr) {
			t.Errorf("checkHostPort(%q) = %v, want ok=%v", tc.addr, err, tc.ok)
		}
	}
}

func TestSafeID(t *testing.T) {
	for id, ok := range map[string]bool{
		"18ef1e1c02ffd3ecd951433c2ec6466d": true,
		"build_1-a":                        true,
		"":                                 false,
		"..":                               false,
		"../../etc/passwd":                 false,
		"a/b":                              false,
		"a.log":                            false,
	} {
		if got := safeID(id); got != ok {
			t.Errorf("safeID(%q) = %v, want %v", id, got, ok)
		}
	}
}
