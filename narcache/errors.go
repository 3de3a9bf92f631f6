package narcache

import "errors"

// Sentinel errors. Every error this package returns for bad data, missing
// nars or refused peers wraps one of these; failures of store's parsers
// additionally wrap store's sentinels (store.ErrBadNar for a malformed NAR).
var (
	// ErrNotFound: no such nar on this node (or, for a fetch, on the peer).
	ErrNotFound = errors.New("nar not found")
	// ErrHashMismatch: bytes do not hash to the expected FileHash or
	// NarHash, or their size disagrees with FileSize or NarSize.
	ErrHashMismatch = errors.New("hash mismatch")
	// ErrBadCompression: a compression this package cannot write or read.
	ErrBadCompression = errors.New("unsupported compression")
	// ErrCorrupt: bytes that do not decompress, or decompress to an
	// invalid NAR (then store.ErrBadNar is wrapped as well).
	ErrCorrupt = errors.New("corrupt nar")
	// ErrTrailingData: bytes follow the end of a NAR.
	ErrTrailingData = errors.New("trailing data after nar")
	// ErrNotMember: a peer that is not a mesh member.
	ErrNotMember = errors.New("peer is not a mesh member")
	// ErrPeer: a peer broke the nar protocol or answered with an error.
	ErrPeer = errors.New("peer protocol error")
	// ErrStalled: a peer moved no byte of a nar transfer for the idle
	// timeout (P2PLimits.IdleTimeout).
	ErrStalled = errors.New("peer stalled")
	// ErrNoHolder: the mesh index names no peer that holds a nar.
	ErrNoHolder = errors.New("no peer holds the nar")
	// ErrClosed: the component was closed or not started.
	ErrClosed = errors.New("closed")
)
