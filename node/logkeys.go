package node

// Log keys used across the package, so every log line names things alike.
const (
	keyErr     = "err"
	keyNode    = "node"
	keyMember  = "member"
	keyPeer    = "peer"
	keyRemote  = "remote"
	keyBuild   = "build"
	keyDrv     = "drv"
	keyPath    = "path"
	keyAddr    = "addr"
	keyLeader  = "leader"
	keyCount   = "count"
	keyEvent   = "event"
	keyElapsed = "elapsed"
	keyState   = "state"
)
