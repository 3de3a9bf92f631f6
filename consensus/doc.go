// Package consensus replicates the coordinator state of a drvmesh build
// farm over hashicorp/raft: builds and their attempts, derivation metadata,
// which node holds which nar, admitted nodes, mesh settings, and the queue
// of build events that hooks consume.
//
// The FSM keeps its state in a bbolt file that is rebuilt from the latest
// raft snapshot and log on every start; the raft log (raft-boltdb) and the
// snapshots are the durable truth. Commands are an append-only numbered
// enum encoded as [type byte][payload]; a type with the high bit set is
// skipped by replicas that do not know it. Reads (GetBuild, ListBuilds, ...)
// are local bbolt read transactions and never go through raft.
// FSM.Authorize decides, from the state, whether a command's issuer (a
// Principal) may send it; the leader asks before it commits.
//
// Raft wraps hashicorp/raft with tuned LAN timings over a stream layer the
// caller supplies (the node's mutual-TLS cluster port). See DESIGN.md for
// the data flow and the measured sizes.
package consensus
