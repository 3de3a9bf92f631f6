// Package httpapi is the node's public HTTP surface: the JSON API under
// /api/v1/ (status, nodes, keys, builds, cancel, missing paths), the
// submit and upload handlers (checking every .drv and content-addressed
// path before anything is recorded), build logs from whichever node ran
// the build, and the web page. The join endpoint, /metrics and the binary
// cache are handlers it is given.
//
// It consumes small interfaces that package node fills: Raft (the state
// and raft status), Applier (writes through the leader, linearizable
// reads), Members (gossip), Copies (local nar copies, signing records),
// Jobs (running builds and their logs, here or, over the cluster port,
// on the node that ran them) and Files (the nar file-key map). It
// imports no other package of the node.
package httpapi
