// Package node wires one drvmesh node: the mesh secrets and identity, the
// cluster port (raft and node-to-node RPC over mutual TLS), gossip, the
// replicated state, the scheduler loop on the leader, the builder, the nar
// cache with its peer-to-peer transfers, hooks, and the HTTP API that the
// CLI and stock Nix/Guix clients use.
//
// Data flow, from a submission to a substitute:
//
//	client ──HTTP──▶ any node ──RPC(mTLS)──▶ leader ──raft──▶ every FSM
//	                                           │ scheduler plan (batched)
//	                                           ▼
//	                          building node ◀─ watch on its assignments
//	                            │ nix-store --realise, substituting from
//	                            │ its own binary cache (peers over libp2p)
//	                            ▼
//	                 outputs ─▶ nar store + narinfo ─raft─▶ index; replicas
package node
