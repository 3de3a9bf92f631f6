// Package node wires one drvmesh node. It owns the configuration, the
// start and stop of every part in named steps, the run context every
// goroutine derives from, the adapters that give narcache its view of the
// index, and the metrics registry. The work happens in rooms that never
// import each other, each declaring the interfaces it consumes:
//
//   - node/cluster: mesh secrets and PKI, the join protocol, the
//     mutual-TLS cluster port, forwarding writes to the leader;
//   - node/httpapi: the JSON API, uploads and submissions, logs, the web
//     page;
//   - node/leader: raft membership, the scheduling round, builds for
//     missing inputs, hooks;
//   - node/agent: running assigned builds, storing their outputs, and
//     keeping every nar's copies.
//
// DESIGN.md follows a build through them and lists which loop waits on
// which signal.
package node
