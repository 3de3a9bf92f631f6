package consensus

import (
	"errors"
	"fmt"
)

// Sentinel errors. Command errors are returned by Apply as values, never as
// panics, and mean the command changed nothing.
var (
	// ErrNotLeader: the command was sent to a node that is not the leader;
	// the returned *NotLeaderError names the leader when one is known.
	ErrNotLeader = errors.New("not the raft leader")
	// ErrNotFound: the build, derivation, nar, node or event does not exist.
	ErrNotFound = errors.New("not found")
	// ErrBadCommand: the command's content is invalid (missing id, unknown
	// state, malformed store path, duplicate id, outputs its derivation
	// does not declare, a key too large to store, ...), or its log entry
	// does not decode (unknown type, malformed payload).
	ErrBadCommand = errors.New("bad command")
	// ErrBadTransition: the build is not in a state that allows the change
	// (cancel of a finished build, a finish from a node that does not run it).
	ErrBadTransition = errors.New("invalid build state transition")
	// ErrOutputsMissing: a build reported success but the nar of one of its
	// outputs is not recorded in the mesh.
	ErrOutputsMissing = errors.New("output nars not recorded")
	// ErrBadSnapshot: a snapshot stream is not one this package wrote.
	ErrBadSnapshot = errors.New("bad snapshot")
	// ErrClosed: the raft node is not started or already closed.
	ErrClosed = errors.New("consensus closed")
	// ErrUnauthorized: the command's issuer may not issue it (Authorize):
	// the wrong role, a node speaking for another, a node that is not a
	// member or is revoked, a volunteer claiming a trusted role.
	ErrUnauthorized = errors.New("unauthorized")
)

// NotLeaderError is returned by Raft.Apply on a follower. It matches
// ErrNotLeader with errors.Is and carries the leader's id and raft address
// (both empty while there is no leader).
type NotLeaderError struct {
	LeaderID   string
	LeaderAddr string
}

func (e *NotLeaderError) Error() string {
	if e.LeaderID == "" {
		return "not the raft leader (no leader known)"
	}
	return fmt.Sprintf("not the raft leader (leader is %s at %s)", e.LeaderID, e.LeaderAddr)
}

// Unwrap makes errors.Is(err, ErrNotLeader) hold.
func (e *NotLeaderError) Unwrap() error { return ErrNotLeader }
