package consensus

import (
	"errors"
	"testing"
)

func TestHashPart(t *testing.T) {
	const h = "0123456789abcdfghijklmnpqrsvwxyz"
	for _, tc := range []struct {
		in, want string
	}{
		{"/nix/store/" + h + "-hello", h},
		{"/gnu/store/" + h + "-hello-2.12.drv", h},
		{h + "-hello", h},
		{"/nix/store/" + h + "-", ""},
		{h + "-", ""},
		{"/nix/store/" + h, ""},
		{"/nix/store/" + h[:31] + "-hello", ""},
		{"/nix/store/" + h + "-hello/", ""},
		{"", ""},
	} {
		got, err := HashPart(tc.in)
		if got != tc.want || (tc.want == "") != errors.Is(err, ErrBadCommand) {
			t.Errorf("HashPart(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}
