package node

import (
	"errors"

	"github.com/drvmesh/drvmesh/node/cluster"
	"github.com/drvmesh/drvmesh/node/httpapi"
)

// Sentinel errors of the node package.
var (
	// ErrNotMember: a peer presented no certificate of this mesh.
	ErrNotMember = cluster.ErrNotMember
	// ErrBadToken: a join or admin token is wrong or expired.
	ErrBadToken = cluster.ErrBadToken
	// ErrBadSecrets: the mesh secrets in the data dir are missing or corrupt.
	ErrBadSecrets = cluster.ErrBadSecrets
	// ErrBadRequest: an API request is malformed.
	ErrBadRequest = httpapi.ErrBadRequest
	// ErrNoLeader: no leader is known right now; try again shortly.
	ErrNoLeader = cluster.ErrNoLeader
	// ErrConfig: the node's flags contradict each other or the data dir.
	ErrConfig = errors.New("bad node configuration")
)
