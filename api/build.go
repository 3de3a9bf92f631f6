package api

import "time"

// Build is one requested build of a derivation: the build object of
// docs/contract.md, as GET /api/v1/builds and /api/v1/builds/{id} answer and as a
// hook reads it on stdin. Times are RFC 3339 (with nanoseconds, in UTC).
type Build struct {
	ID         string            `json:"id"`
	Derivation string            `json:"derivation"` // the .drv store path
	System     string            `json:"system"`
	State      BuildState        `json:"state"`
	Priority   int               `json:"priority"` // higher runs first
	Tags       map[string]string `json:"tags"`
	Node       string            `json:"node"` // the node it is scheduled on or ran on; "" while queued
	Attempts   []Attempt         `json:"attempts"`
	Outputs    []Output          `json:"outputs"` // set once the build succeeded
	CreatedAt  time.Time         `json:"created_at"`
	StartedAt  *time.Time        `json:"started_at"`  // null until a node starts it
	FinishedAt *time.Time        `json:"finished_at"` // null until it is final
	Error      string            `json:"error"`       // why it failed or was canceled

	// Scheduling details beyond the contract's list, present only when set.
	DeferUntil  time.Time `json:"defer_until,omitzero"`   // not started before this
	Retries     int       `json:"retries,omitempty"`      // failed attempts allowed before the build fails
	FailedNodes []string  `json:"failed_nodes,omitempty"` // nodes where an attempt failed
	WaitingFor  []string  `json:"waiting_for,omitempty"`  // input store paths no node holds
}

// Attempt is one run of a build on a node.
type Attempt struct {
	Node       string        `json:"node"`
	StartedAt  time.Time     `json:"started_at"`
	FinishedAt time.Time     `json:"finished_at,omitzero"` // absent while it runs
	Result     AttemptResult `json:"result,omitempty"`     // absent while it runs
	Error      string        `json:"error,omitempty"`
}

// AttemptResult is how an attempt ended.
type AttemptResult string

// The results of an attempt.
const (
	ResultSucceeded     AttemptResult = "succeeded"
	ResultFailed        AttemptResult = "failed"
	ResultLost          AttemptResult = "lost" // its node left or died
	ResultMissingInputs AttemptResult = "missing-inputs"
	ResultCanceled      AttemptResult = "canceled"
)

// Output is one built output of a succeeded build, stored in the mesh.
type Output struct {
	Name    string `json:"name"` // "out", "dev", ...
	Path    string `json:"path"`
	NarHash string `json:"nar_hash"` // "sha256:<nix base32>"
	NarSize int64  `json:"nar_size"`
}
