// Package cluster is a member's standing in its mesh and its node-to-node
// port: the mesh CA and certificates, the mesh secrets in the data dir,
// both sides of the join protocol, the mutual-TLS cluster port (raft and
// RPC on one listener), and forwarding writes to the leader with
// read-your-writes.
//
// It owns: the data dir's secret files (Bootstrap, Load, Join), the
// cluster port (Mux, Dialer, RaftLayer; raft streams only from voters,
// VoterGate), the join handler (JoinServer),
// the peers file (Peers), and the Forwarder, whose Appliers (As, one per
// Role) every other part of the node writes through. The leader
// authorizes every command, its own and forwarded ones, with the issuer
// the cluster port verified (principal.go) before raft commits it.
//
// It consumes: the consensus.Raft it forwards for, and a gossip Members
// view for the addresses a joiner is told. It imports no other package of
// the node; package node wires it to the rest.
package cluster
