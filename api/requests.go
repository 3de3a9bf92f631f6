package api

import "time"

// SubmitRequest creates builds: POST /api/v1/builds. Every derivation
// must already be in the mesh (see MissingRequest and the nar uploads).
type SubmitRequest struct {
	Derivations   []string          `json:"derivations"` // .drv store paths
	Priority      int               `json:"priority"`
	Tags          map[string]string `json:"tags,omitempty"`
	Closure       bool              `json:"closure"`         // also build inputs whose outputs the mesh lacks
	IgnoreIfBuilt bool              `json:"ignore_if_built"` // answer an existing successful build instead
	DeferUntil    time.Time         `json:"defer_until,omitzero"`
	// Retries is how often a failed build is retried; -1 (and an absent
	// field) means the mesh's setting, so 0 is always sent.
	Retries int `json:"retries"`
}

// SubmitResponse lists the builds a submission created (or found, with
// IgnoreIfBuilt), the submitted derivations first.
type SubmitResponse struct {
	Builds []SubmittedBuild `json:"builds"`
}

// SubmittedBuild is one build of a SubmitResponse.
type SubmittedBuild struct {
	ID         string `json:"id"`
	Derivation string `json:"derivation"`
}

// CancelRequest cancels queued or running builds: POST /api/v1/cancel.
type CancelRequest struct {
	IDs []string `json:"ids"`
}

// CancelResponse names the builds a cancel request covered.
type CancelResponse struct {
	Canceled []string `json:"canceled"`
}

// MissingRequest asks which store paths the mesh lacks:
// POST /api/v1/paths/missing.
type MissingRequest struct {
	Paths []string `json:"paths"`
}

// MissingResponse lists the asked paths the mesh lacks, never null.
type MissingResponse struct {
	Missing []string `json:"missing"`
}

// NarRecord is a store path the mesh recorded: the answer to
// PUT /api/v1/nars, and each path of an ImportResponse.
type NarRecord struct {
	Path    string `json:"path"`
	NarHash string `json:"nar_hash"` // "sha256:<nix base32>"
	NarSize int64  `json:"nar_size"`
}

// ImportResponse lists the paths POST /api/v1/nars/import recorded, in
// stream order; an import records all of its paths or none.
type ImportResponse struct {
	Imported []NarRecord `json:"imported"`
}

// ErrorResponse is the body of every non-2xx answer of the API.
type ErrorResponse struct {
	Message string `json:"error"`
}
