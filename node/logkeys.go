package node

import (
	"github.com/drvmesh/drvmesh/node/internal/httpjson"
	"github.com/drvmesh/drvmesh/node/internal/logkey"
)

// Log keys, from the node's one list.
const (
	keyErr     = logkey.Err
	keyNode    = logkey.Node
	keyMember  = logkey.Member
	keyPeer    = logkey.Peer
	keyBuild   = logkey.Build
	keyDrv     = logkey.Drv
	keyPath    = logkey.Path
	keyAddr    = logkey.Addr
	keyCount   = logkey.Count
	keyEvent   = logkey.Event
	keyElapsed = logkey.Elapsed
	keyState   = logkey.State
)

var (
	writeJSON = httpjson.Write
	apiError  = httpjson.Error
)
