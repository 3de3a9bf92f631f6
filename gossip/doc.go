// Package gossip carries drvmesh's membership, liveness and capacity over
// hashicorp/memberlist (SWIM gossip on one TCP+UDP port).
//
// Each node runs one Gossip. Its Meta (systems, features, build slots,
// load, free disk, and the addresses of its HTTP, raft and libp2p
// listeners) rides on memberlist's alive messages, packed by EncodeMeta in a
// versioned tag-length-value encoding that must fit in 512 bytes; SetMeta
// pushes a new one to the mesh. Members lists every node this one knows,
// with its status (alive, dead, left) and meta, and Events streams the
// changes. Gossip only reports: it never changes raft membership; node
// reconciles members into raft on the leader.
//
// Lifecycle: New checks the Config and starts nothing; Start binds the
// listeners; Join contacts existing members; Leave announces a graceful
// exit (others then see "left" rather than "dead"); Close stops everything
// and closes the Events channel.
//
// With Config.SecretKey set (32 bytes), memberlist encrypts and
// authenticates every packet and stream with AES-256-GCM: a node without
// the key can neither join nor learn anything from the mesh.
//
// Timings start from memberlist's LAN defaults; Config.Scale stretches
// them for WAN or volunteer meshes, and TestConfig shrinks them to tens of
// milliseconds for tests on 127.0.0.1.
//
// The memberlist delegates each live in one small file (delegate_*.go)
// and forward to the Gossip: events to the member table, meta to the
// encoded local Meta, merge and alive to a check that refuses peers whose
// meta does not decode, conflicts to the log. memberlist's *log.Logger is
// adapted to log/slog at that boundary.
package gossip
