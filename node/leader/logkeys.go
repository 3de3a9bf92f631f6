package leader

import "github.com/drvmesh/drvmesh/node/internal/logkey"

// Log keys, from the node's one list.
const (
	keyErr     = logkey.Err
	keyMember  = logkey.Member
	keyBuild   = logkey.Build
	keyAddr    = logkey.Addr
	keyCount   = logkey.Count
	keyEvent   = logkey.Event
	keyElapsed = logkey.Elapsed
	keyState   = logkey.State
)
