// Package logkey holds the log keys every package of the node uses, so
// that every log line names things alike.
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
