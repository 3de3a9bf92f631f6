package node

import "github.com/drvmesh/drvmesh/node/internal/logkey"

// Log keys, from the node's one list.
const (
	keyErr   = logkey.Err
	keyNode  = logkey.Node
	keyPeer  = logkey.Peer
	keyPath  = logkey.Path
	keyCount = logkey.Count
)
