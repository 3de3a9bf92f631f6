package scheduler

import "errors"

// Sentinel errors. Functions wrap them with short context; test with
// errors.Is.
var (
	// ErrBadConfig reports a Config that cannot be used (unknown strategy,
	// negative or too large AgeStep).
	ErrBadConfig = errors.New("bad scheduler config")
	// ErrBadBuild reports a build without an id or a system.
	ErrBadBuild = errors.New("bad build")
	// ErrBadNode reports a node without a name.
	ErrBadNode = errors.New("bad node")
	// ErrUnknownBuild reports an id the planner does not hold.
	ErrUnknownBuild = errors.New("unknown build")
	// ErrUnknownNode reports a node name the planner does not hold.
	ErrUnknownNode = errors.New("unknown node")
)
