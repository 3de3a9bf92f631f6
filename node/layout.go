package node

import "github.com/drvmesh/drvmesh/node/cluster"

// Data dir layout beyond the secrets cluster keeps.
const (
	dirRaft        = "raft"
	dirNars        = "nars"
	dirLogs        = "logs"
	fileP2PKey     = cluster.FileP2PKey
	fileAdminToken = cluster.FileAdminToken
)
