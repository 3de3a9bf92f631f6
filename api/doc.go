// Package api holds the wire types of drvmesh's HTTP JSON API under
// /api/v1/: the requests a client sends and the answers a node gives.
//
// The node serves these types and every client (the drvmesh CLI, the
// benchmarks, scripts) decodes them, so one definition fixes the format
// on both sides. The field names and formats are the external contract of
// docs/contract.md ("Build JSON", "status --json", "nodes --json"): a field may be
// added, never renamed or dropped, and a field the contract lists is never omitted
// from the JSON (an unset time is null).
//
// The package imports nothing of drvmesh's own, like store: the node
// converts its internal records (raft's build record among them) into
// these types, so the replicated state can change without changing what
// clients see, and a client never needs the node's internals.
//
// The endpoints, each with its types:
//
//	GET  /api/v1/status              Status
//	GET  /api/v1/nodes               []Node
//	GET  /api/v1/key                 Key
//	GET  /api/v1/builds              []Build  (?state=S&tag=k=v&system=S&node=N&derivation=D&limit=N&after=ID&fresh=1)
//	GET  /api/v1/builds/{id}         Build    (?fresh=1)
//	GET  /api/v1/builds/{id}/log     plain text (?follow=1)
//	POST /api/v1/builds              SubmitRequest → SubmitResponse
//	POST /api/v1/cancel              CancelRequest → CancelResponse
//	POST /api/v1/paths/missing       MissingRequest → MissingResponse
//	PUT  /api/v1/nars                a NAR (?path=&nar_hash=&nar_size=&reference=) → NarRecord
//	POST /api/v1/nars/import         a nix-store --export stream → ImportResponse
//
// Any non-2xx answer carries an ErrorResponse.
package api
