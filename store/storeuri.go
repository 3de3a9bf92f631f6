package store

import (
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
)

// LocalStoreRoot reads a Nix store URI for where the store's files are on
// this machine. The machine's own store ("", "auto", "daemon", "local")
// gives root "" (files at their store paths); a chroot store
// ("local?root=DIR", or a bare absolute DIR) gives DIR. ok is false for
// any other kind of store (ssh://, a binary cache, ...), whose files
// cannot be read directly. A malformed query is an error.
func LocalStoreRoot(uri string) (root string, ok bool, err error) {
	if strings.HasPrefix(uri, "/") {
		return filepath.Clean(uri), true, nil
	}
	scheme, query, _ := strings.Cut(uri, "?")
	switch scheme {
	case "", "auto", "daemon", "local":
	default:
		return "", false, nil
	}
	q, err := url.ParseQuery(query)
	if err != nil {
		return "", false, fmt.Errorf("store uri %q: %v", uri, err)
	}
	if r := q.Get("root"); r != "" {
		return filepath.Clean(r), true, nil
	}
	return "", true, nil
}
