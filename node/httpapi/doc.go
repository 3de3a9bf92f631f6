// Package httpapi is the node's public HTTP surface: the JSON API under
// /api/v1/ (status, nodes, keys, builds, cancel, missing paths), the
// submit and upload handlers (checking every .drv and content-addressed
// path before anything is recorded), build logs from whichever node ran
// the build, and the web page. The join endpoint, /metrics and the binary
// cache are handlers it is given.
//
// Every answer is a type of package api (builds through buildJSON, never
// the replicated record). Anonymous clients read only the binary cache,
// the keys and the status unless Config.PublicRead is PublicReadAll (see
// access.go); every input is bounded before it is held in memory: the
// build list pages (builds.go), the missing-path query streams with a path
// cap (missing.go), uploads and imports cap sizes and references
// (upload.go).
//
// It consumes small interfaces that package node fills: Raft (the state
// and raft status), Applier (writes through the leader, linearizable
// reads), Members (gossip), Copies (local nar copies, signing records),
// Jobs (running builds and their logs, here or, over the cluster port,
// on the node that ran them) and Files (the nar file-key map). It
// imports no other package of the node.
package httpapi
