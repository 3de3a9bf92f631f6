package gossip

import "errors"

// Sentinel errors. Callers test for them with errors.Is; the package wraps
// them with short lowercase context.
var (
	// ErrMetaTooLarge means an encoded Meta does not fit in memberlist's
	// per-node meta limit (512 bytes). The meta is refused, never truncated.
	ErrMetaTooLarge = errors.New("gossip: meta too large")
	// ErrBadMeta means meta bytes received from a peer, or a Meta given to
	// EncodeMeta, are malformed (bad version, truncated field, bad number).
	ErrBadMeta = errors.New("gossip: bad meta")
	// ErrBadConfig means a Config cannot be used (missing name, a secret
	// key of the wrong length, a negative scale or timing).
	ErrBadConfig = errors.New("gossip: bad config")
	// ErrNotStarted is returned by calls that need the memberlist before
	// Start has created it.
	ErrNotStarted = errors.New("gossip: not started")
	// ErrStarted is returned by a second Start.
	ErrStarted = errors.New("gossip: already started")
	// ErrClosed is returned by calls made after Close.
	ErrClosed = errors.New("gossip: closed")
)
