// Package agent is this node's building side and the keeper of its nars'
// copies. An Agent takes the builds the leader assigns to this node,
// prepares their inputs from the replicated state, runs the builder,
// stores the outputs as nars and records the result; it serves the logs
// of the builds it ran to other nodes over the cluster port
// (/rpc/log/{id}) and fetches theirs the same way (RemoteLog). A Keeper
// signs the
// records of the nars this node makes and keeps every nar on MinCopies
// nodes (asking others to copy, copying when asked, evicting over quota
// only what others hold).
//
// It consumes small interfaces that package node fills: Raft (the state
// and its change signal), Applier (writes through the leader), Members
// (gossip), Files (the nar file-key map and holders), Fetcher (libp2p
// copies), plus the builder and the nar store. It imports no other package
// of the node.
package agent
