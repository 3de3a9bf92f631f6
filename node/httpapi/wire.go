package httpapi

import (
	"encoding/json"
	"maps"
	"slices"

	wire "github.com/drvmesh/drvmesh/api"
	"github.com/drvmesh/drvmesh/consensus"
)

// buildJSON is the wire form of a replicated build record: the raft record
// may change without changing what clients and hooks read.
func buildJSON(b *consensus.Build) wire.Build {
	out := wire.Build{
		ID: b.ID, Derivation: b.Derivation, System: b.System,
		State: wire.BuildState(b.State), Priority: b.Priority,
		Tags: maps.Clone(b.Tags), Node: b.Node,
		Attempts:  make([]wire.Attempt, 0, len(b.Attempts)),
		Outputs:   make([]wire.Output, 0, len(b.Outputs)),
		CreatedAt: b.CreatedAt, Error: b.Error,
		DeferUntil: b.DeferUntil, Retries: b.Retries,
		FailedNodes: slices.Clone(b.FailedNodes), WaitingFor: slices.Clone(b.WaitingFor),
	}
	if out.Tags == nil {
		out.Tags = map[string]string{}
	}
	for _, a := range b.Attempts {
		out.Attempts = append(out.Attempts, wire.Attempt{Node: a.Node, StartedAt: a.StartedAt, FinishedAt: a.FinishedAt, Result: wire.AttemptResult(a.Result), Error: a.Error})
	}
	for _, o := range b.Outputs {
		out.Outputs = append(out.Outputs, wire.Output{Name: o.Name, Path: o.Path, NarHash: o.NarHash, NarSize: o.NarSize})
	}
	if !b.StartedAt.IsZero() {
		t := b.StartedAt
		out.StartedAt = &t
	}
	if !b.FinishedAt.IsZero() {
		t := b.FinishedAt
		out.FinishedAt = &t
	}
	return out
}

// BuildJSON is the JSON a hook reads on stdin: the build as the API
// serves it.
func BuildJSON(b *consensus.Build) ([]byte, error) {
	return json.Marshal(buildJSON(b))
}

// buildsJSON converts a list of records.
func buildsJSON(bs []*consensus.Build) []wire.Build {
	out := make([]wire.Build, 0, len(bs))
	for _, b := range bs {
		out = append(out, buildJSON(b))
	}
	return out
}
