package node

import "errors"

// Sentinel errors of the node package.
var (
	// ErrNotMember: a peer presented no certificate of this mesh.
	ErrNotMember = errors.New("not a member of this mesh")
	// ErrBadToken: a join or admin token is wrong or expired.
	ErrBadToken = errors.New("wrong or expired token")
	// ErrBadSecrets: the mesh secrets in the data dir are missing or corrupt.
	ErrBadSecrets = errors.New("bad mesh secrets")
	// ErrBadRequest: an API request is malformed.
	ErrBadRequest = errors.New("bad request")
	// ErrNoLeader: no leader is known right now; try again shortly.
	ErrNoLeader = errors.New("no leader")
	// ErrConfig: the node's flags contradict each other or the data dir.
	ErrConfig = errors.New("bad node configuration")
)
