package api

// Status is one node's view of the mesh: GET /api/v1/status.
type Status struct {
	Node        string   `json:"node"`
	Leader      string   `json:"leader"` // a node name, "" during an election
	Term        uint64   `json:"term"`
	CommitIndex uint64   `json:"commit_index"`
	Voters      []string `json:"voters"`
	Nonvoters   []string `json:"nonvoters"`
	Queued      int      `json:"queued"`  // builds queued
	Running     int      `json:"running"` // builds scheduled or building
}

// Node is one member of the mesh: GET /api/v1/nodes answers a list of
// them, sorted by name.
type Node struct {
	Name     string     `json:"name"`
	Status   NodeStatus `json:"status"`
	Raft     RaftRole   `json:"raft"`
	Systems  []string   `json:"systems"`
	Features []string   `json:"features"`
	MaxJobs  int        `json:"max_jobs"`
	Running  int        `json:"running"`
	HTTP     string     `json:"http"`
	Load     float64    `json:"load"`
	FreeDisk uint64     `json:"free_disk"`        // bytes
	P2P      string     `json:"p2p,omitempty"`    // libp2p multiaddr, when gossip knows it
	Gossip   string     `json:"gossip,omitempty"` // gossip address, when gossip knows it
}

// NodeStatus is a member's liveness, as gossip sees it.
type NodeStatus string

// The liveness of a member.
const (
	NodeAlive   NodeStatus = "alive"
	NodeSuspect NodeStatus = "suspect"
	NodeDead    NodeStatus = "dead"
	NodeLeft    NodeStatus = "left"
)

// RaftRole is a member's place in the raft configuration.
type RaftRole string

// The raft roles of a member.
const (
	RaftLeader   RaftRole = "leader"
	RaftVoter    RaftRole = "voter"
	RaftNonvoter RaftRole = "nonvoter"
	RaftNone     RaftRole = "none"
)

// Key is the mesh's public signing keys: GET /api/v1/key.
type Key struct {
	Nix  string `json:"nix"`            // "name:base64", for trusted-public-keys
	Guix string `json:"guix,omitempty"` // the signing-key.pub text, when the mesh has a Guix key
}
