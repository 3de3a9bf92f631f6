package api

import (
	"fmt"
	"strings"
)

// BuildState is where a build is in its life: queued, scheduled (given
// to a node), building, then one of the final states succeeded, failed
// or canceled.
type BuildState string

// The build states of docs/contract.md.
const (
	StateQueued    BuildState = "queued"
	StateScheduled BuildState = "scheduled"
	StateBuilding  BuildState = "building"
	StateSucceeded BuildState = "succeeded"
	StateFailed    BuildState = "failed"
	StateCanceled  BuildState = "canceled"
)

// BuildStates lists every build state in life order.
var BuildStates = []BuildState{StateQueued, StateScheduled, StateBuilding, StateSucceeded, StateFailed, StateCanceled}

// Final reports whether a build in state s has ended: it never changes
// state again.
func (s BuildState) Final() bool {
	return s == StateSucceeded || s == StateFailed || s == StateCanceled
}

// Valid reports whether s is one of BuildStates.
func (s BuildState) Valid() bool {
	switch s {
	case StateQueued, StateScheduled, StateBuilding, StateSucceeded, StateFailed, StateCanceled:
		return true
	}
	return false
}

func (s BuildState) String() string { return string(s) }

// ParseBuildState returns the build state named s, exactly as the API
// spells it.
func ParseBuildState(s string) (BuildState, error) {
	if st := BuildState(s); st.Valid() {
		return st, nil
	}
	return "", fmt.Errorf("%w %q: want one of %s", ErrUnknownState, s, statesList())
}

// statesList is BuildStates as "queued, scheduled, ..., canceled".
func statesList() string {
	names := make([]string, len(BuildStates))
	for i, s := range BuildStates {
		names[i] = string(s)
	}
	return strings.Join(names, ", ")
}
