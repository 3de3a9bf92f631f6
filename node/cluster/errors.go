package cluster

import (
	"errors"
	"fmt"
)

// Sentinel errors of the cluster package.
var (
	// ErrNotMember: a peer presented no certificate of this mesh.
	ErrNotMember = errors.New("not a member of this mesh")
	// ErrBadToken: a join or admin token is wrong or expired.
	ErrBadToken = errors.New("wrong or expired token")
	// ErrBadSecrets: the mesh secrets in the data dir are missing or corrupt.
	ErrBadSecrets = errors.New("bad mesh secrets")
	// ErrBadRequest: a request (a join, a public key) is malformed.
	ErrBadRequest = errors.New("bad request")
	// ErrNoLeader: no leader is known right now; try again shortly.
	ErrNoLeader = errors.New("no leader")
	// errJoinRefused: a member refused the request for good (bad name,
	// name taken); asking again will not help.
	errJoinRefused = errors.New("join refused")
	// errNonceUsed: a join request's nonce was used before (a replay).
	errNonceUsed = fmt.Errorf("%w: this join request was used before", ErrBadToken)
	// errNonceFull: the member remembers as many nonces as it may.
	errNonceFull = errors.New("too many join requests remembered")
	// errForward: the leader could not be reached or answered oddly.
	errForward = errors.New("forward to leader")
)
