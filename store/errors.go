package store

import "errors"

// Sentinel errors. Every error this package returns wraps one of these, so
// callers can tell bad input from I/O failure with errors.Is.
var (
	// ErrBadEncoding: text is not valid nix32, hex or base64 of the right length.
	ErrBadEncoding = errors.New("bad encoding")
	// ErrBadHash: a hash string or algorithm is malformed or unknown.
	ErrBadHash = errors.New("bad hash")
	// ErrBadStorePath: a store path is malformed or outside the store dir.
	ErrBadStorePath = errors.New("bad store path")
	// ErrBadDerivation: a .drv is malformed or its output paths are wrong.
	ErrBadDerivation = errors.New("bad derivation")
	// ErrBadNar: a NAR stream violates the format.
	ErrBadNar = errors.New("bad nar")
	// ErrBadNarInfo: a narinfo is malformed.
	ErrBadNarInfo = errors.New("bad narinfo")
	// ErrBadKey: a key file or key line is malformed.
	ErrBadKey = errors.New("bad key")
	// ErrBadSignature: a signature is malformed or does not verify.
	ErrBadSignature = errors.New("bad signature")
)
