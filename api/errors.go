package api

import "errors"

// Errors of parsing wire values.
var (
	// ErrUnknownState is a build state outside BuildStates.
	ErrUnknownState = errors.New("unknown build state")
)
