package builder

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"
)

// Sentinel errors. Build wraps exactly one of them, so the node can tell a
// derivation's own failure from missing inputs, cancellation and trouble
// with the local daemon.
var (
	// ErrBuildFailed: the derivation's builder failed (or timed out); the
	// build log says why.
	ErrBuildFailed = errors.New("build failed")
	// ErrMissingInputs: the daemon could not substitute the derivation or
	// some of its inputs; Result.MissingInputs lists the store paths.
	ErrMissingInputs = errors.New("missing inputs")
	// ErrCanceled: the context was canceled and the build's process group
	// was stopped.
	ErrCanceled = errors.New("build canceled")
	// ErrBackend: the daemon or its tools misbehaved (not installed, store
	// unreachable, output we cannot make sense of).
	ErrBackend = errors.New("builder backend failure")
	// ErrNoBuilder: this node has no builder (--builder none).
	ErrNoBuilder = errors.New("no builder configured")
	// ErrBadRequest: the request names no valid derivation or an output the
	// derivation does not have.
	ErrBadRequest = errors.New("bad build request")
)

// Builder builds derivations with the machine's own daemon.
type Builder interface {
	// Name is the backend's name: "nix", "guix" or "none".
	Name() string
	// Build realises req.DrvPath, streaming the daemon's combined output
	// to log while it runs. Errors wrap one of the sentinels above; with
	// ErrMissingInputs the Result lists the missing paths.
	Build(ctx context.Context, req Request, log io.Writer) (Result, error)
	// OutputNAR writes the NAR serialization of a built output path.
	OutputNAR(ctx context.Context, storePath string, w io.Writer) error
	// Close releases what the backend owns (its private state dir).
	Close() error
}

// Request is one derivation to build.
type Request struct {
	DrvPath string   // the .drv store path
	Outputs []string // output names to realise; empty means all
	// Substituter is the node's own binary cache, e.g.
	// http://127.0.0.1:7700; the daemon fetches the .drv, its sources and
	// its inputs from there. Empty means the store's own settings.
	Substituter string
	// Prepared says the caller has checked that Substituter holds the
	// .drv, its input sources and the outputs of its input derivations.
	// The daemon then substitutes them itself while it realises, in one
	// step. Without it, Build first fetches them in steps that never
	// build an input, so an input the substituter lacks is reported
	// missing (with Prepared, the daemon would build it).
	Prepared    bool
	TrustedKeys []string      // key lines the daemon trusts for it
	MaxSilent   time.Duration // kill the build after this long without output; 0: no limit
	Timeout     time.Duration // kill the build after this long; 0: no limit

	cacheDir string // the build's own XDG_CACHE_HOME, set by Build
}

// Result is what a build produced.
type Result struct {
	Outputs map[string]string // output name → store path
	// MissingInputs are the store paths the daemon could not get (set
	// with ErrMissingInputs).
	MissingInputs []string
	// Substituted is true when the outputs were not built by this call:
	// fetched from the substituter or already present.
	Substituted bool
}

// None is the backend of a node that never builds.
type None struct{}

var _ Builder = None{}

// NewNone returns the "none" backend.
func NewNone() None { return None{} }

// Name implements Builder.
func (None) Name() string { return "none" }

// Build always fails with ErrNoBuilder.
func (None) Build(context.Context, Request, io.Writer) (Result, error) {
	return Result{}, ErrNoBuilder
}

// OutputNAR always fails with ErrNoBuilder.
func (None) OutputNAR(_ context.Context, storePath string, _ io.Writer) error {
	return fmt.Errorf("dump %s: %w", storePath, ErrNoBuilder)
}

// Close implements Builder.
func (None) Close() error { return nil }
