package store

import "testing"

func TestLocalStoreRoot(t *testing.T) {
	for _, tc := range []struct {
		uri, root string
		ok, err   bool
	}{
		{"", "", true, false},
		{"auto", "", true, false},
		{"daemon", "", true, false},
		{"local", "", true, false},
		{"local?root=/tmp/s", "/tmp/s", true, false},
		{"local?root=/tmp/s/&store=/nix/store", "/tmp/s", true, false},
		{"/tmp/s/", "/tmp/s", true, false},
		{"ssh://host", "", false, false},
		{"https://cache.nixos.org", "", false, false},
		{"local?root=%zz", "", false, true},
	} {
		root, ok, err := LocalStoreRoot(tc.uri)
		if root != tc.root || ok != tc.ok || (err != nil) != tc.err {
			t.Errorf("LocalStoreRoot(%q) = %q, %v, %v; want %q, %v, error %v", tc.uri, root, ok, err, tc.root, tc.ok, tc.err)
		}
	}
}
