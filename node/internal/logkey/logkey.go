package logkey

// Log keys.
const (
	Err     = "err"
	Node    = "node"
	Member  = "member"
	Peer    = "peer"
	Remote  = "remote"
	Build   = "build"
	Drv     = "drv"
	Path    = "path"
	Addr    = "addr"
	Leader  = "leader"
	Count   = "count"
	Event   = "event"
	Elapsed = "elapsed"
	State   = "state"
)
