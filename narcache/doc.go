// Package narcache stores, serves and moves nars.
//
// A Disk keeps nar files content-addressed by FileHash under a data
// directory, writes them atomically and verifies every byte before a file
// becomes visible: the file hashes to its FileHash, and its decompressed
// NAR is strictly valid and hashes to its NarHash. Ingest compresses an
// uncompressed NAR once per configured compression while checking it. An
// optional quota evicts least recently used files, but only those that
// enough other nodes hold.
//
// A Handler is the binary cache every node serves to stock Nix and Guix
// clients: nix-cache-info, signed narinfos rendered from the replicated
// index, nar files (from disk via sendfile, or fetched from a peer while
// being streamed and kept), Guix-style nar routes and build logs.
//
// P2P is a libp2p host that moves nar files between mesh members over the
// /drvmesh/nar/1.0.0 protocol; non-members are refused at the secure
// handshake, every member is held to per-peer resource limits and an
// idle timeout (P2PLimits), and peers that send bad bytes are reported.
//
// The package does not know consensus, gossip or the node: the node
// implements the small interfaces declared here (Index, Holders, Logs,
// the member check) and wires the parts together. See DESIGN.md.
package narcache
