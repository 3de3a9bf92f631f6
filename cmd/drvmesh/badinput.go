package main

import (
	"errors"

	"github.com/drvmesh/drvmesh/store"
)

// isBadInput reports whether err is malformed input (exit 2) rather than a
// failed operation.
func isBadInput(err error) bool {
	for _, e := range []error{
		store.ErrBadEncoding, store.ErrBadHash, store.ErrBadStorePath,
		store.ErrBadDerivation, store.ErrBadNar, store.ErrBadNarInfo,
		store.ErrBadKey,
	} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
