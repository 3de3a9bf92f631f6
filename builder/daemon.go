package builder

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"

	"github.com/drvmesh/drvmesh/builder/worker"
	"github.com/drvmesh/drvmesh/store"
)

// PathInfo is a store path's metadata as the daemon registers it.
type PathInfo = worker.PathInfo

// InputSource provides the store paths a build needs that the daemon's
// store lacks: .drv files and input paths, as NARs with their metadata
// (the node implements it from its nar store).
type InputSource interface {
	// OpenNAR opens the NAR of storePath. Its error wraps
	// ErrMissingInputs when the source does not hold the path. info.Path
	// must be storePath; info.References, NarHash and NarSize must be
	// those of the NAR.
	OpenNAR(ctx context.Context, storePath string) (nar io.ReadCloser, info PathInfo, err error)
}

// NixDaemonConfig configures the daemon backend.
type NixDaemonConfig struct {
	// Pool holds the connections to the daemon; NixDaemon.Close closes it.
	Pool *DaemonPool
	// Inputs provides what the daemon's store lacks; nil: inputs the
	// store lacks are reported missing.
	Inputs InputSource
	// StoreDir is the logical store dir; default /nix/store.
	StoreDir string
	// Options are sent before every build; the request's MaxSilent and
	// Timeout replace theirs, and substitution is always off (inputs come
	// from Inputs).
	Options worker.Options
	// Logger receives debug lines; nil: slog.Default.
	Logger *slog.Logger
}

// NixDaemon builds by speaking the worker protocol to a Nix daemon:
// it copies the missing inputs into the store (AddToStoreNar) and sends
// the derivation inline (BuildDerivation), as Hydra's queue runner does.
// The daemon must trust the node's user (nix-daemon --stdio, root, or
// trusted-users): only trusted users may build input-addressed
// derivations this way or add paths without signatures.
//
// Inputs come from the InputSource, never from a substituter: a
// Request's Substituter, Prepared and TrustedKeys are not used. Outputs
// must have known paths (input-addressed or fixed); floating
// content-addressed outputs are refused with ErrBadRequest.
type NixDaemon struct {
	cfg  NixDaemonConfig
	pool *DaemonPool
	log  *slog.Logger
}

var _ Builder = (*NixDaemon)(nil)

// Bounds on the files read to plan a build.
const maxDrvSize = 16 << 20

// NewNixDaemon checks the configuration. It starts nothing.
func NewNixDaemon(cfg NixDaemonConfig) (*NixDaemon, error) {
	if cfg.Pool == nil {
		return nil, fmt.Errorf("new nix daemon builder: %w: no pool", ErrBadRequest)
	}
	if cfg.StoreDir == "" {
		cfg.StoreDir = "/nix/store"
	}
	cfg.StoreDir = strings.TrimSuffix(cfg.StoreDir, "/")
	n := &NixDaemon{cfg: cfg, pool: cfg.Pool, log: cfg.Logger}
	if n.log == nil {
		n.log = slog.Default()
	}
	return n, nil
}

// Name implements Builder.
func (n *NixDaemon) Name() string { return "nix" }

// Close closes the pool's connections.
func (n *NixDaemon) Close() error { return n.pool.Close() }

func (n *NixDaemon) checkPath(p string) error {
	if _, err := store.ParseStorePath(n.cfg.StoreDir, p); err != nil {
		return fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	return nil
}

// Build reads the .drv (from the store, or else from Inputs), copies the
// inputs the store lacks, then builds with BuildDerivation.
func (n *NixDaemon) Build(ctx context.Context, req Request, log io.Writer) (Result, error) {
	if err := n.checkPath(req.DrvPath); err != nil || !strings.HasSuffix(req.DrvPath, ".drv") {
		return Result{}, fmt.Errorf("build %s: %w", req.DrvPath, ErrBadRequest)
	}
	c, err := n.pool.Get(ctx)
	if err != nil {
		return Result{}, fmt.Errorf("build %s: %w", req.DrvPath, err)
	}
	defer n.pool.Put(c)
	s := &session{n: n, c: c, ctx: ctx}
	res, err := s.build(req, log)
	if err != nil {
		if ctx.Err() != nil && !errors.Is(err, ErrBadRequest) {
			return Result{}, fmt.Errorf("build %s: %w: %w", req.DrvPath, ErrCanceled, ctx.Err())
		}
		return res, fmt.Errorf("build %s: %w", req.DrvPath, err)
	}
	return res, nil
}

// session is one build's use of a connection.
type session struct {
	n   *NixDaemon
	c   *worker.Conn
	ctx context.Context
	// missing collects the paths neither the store nor Inputs has.
	missing []string
}

// backend wraps a protocol or daemon error.
func backend(err error) error { return fmt.Errorf("%w: %w", ErrBackend, err) }

func (s *session) build(req Request, log io.Writer) (Result, error) {
	d, err := s.readDrv(req.DrvPath)
	if err != nil {
		return s.result(err)
	}
	want, err := wantedOutputs(d, req.DrvPath, req.Outputs)
	if err != nil {
		return Result{}, err
	}
	for name, p := range want {
		if p == "" {
			return Result{}, fmt.Errorf("output %s has no path (content-addressed): %w", name, ErrBadRequest)
		}
	}
	if ok, err := s.allValid(want); err != nil || ok {
		if err != nil {
			return Result{}, err
		}
		return Result{Outputs: want, Substituted: true}, nil
	}
	inputs := slices.Clone(d.InputSrcs)
	for _, drv := range d.InputDrvPaths() {
		in, err := s.readDrv(drv)
		if err != nil {
			if errors.Is(err, ErrMissingInputs) {
				continue
			}
			return Result{}, err
		}
		for _, name := range d.InputDrvs[drv] {
			o, ok := in.Output(name)
			if !ok || o.Path == "" {
				return Result{}, fmt.Errorf("input %s output %q: %w: no path", drv, name, ErrBackend)
			}
			inputs = append(inputs, o.Path)
		}
	}
	if len(s.missing) > 0 {
		return s.result(nil)
	}
	slices.Sort(inputs)
	inputs = slices.Compact(inputs)
	if err := s.ensure(inputs); err != nil {
		return Result{}, err
	}
	if len(s.missing) > 0 {
		return s.result(nil)
	}
	opts := s.n.cfg.Options
	opts.MaxSilentTime, opts.BuildTimeout = req.MaxSilent, req.Timeout
	opts.UseSubstitutes = false
	if err := s.c.SetOptions(s.ctx, opts); err != nil {
		return Result{}, backend(err)
	}
	basic := worker.BasicDerivation{
		Outputs:   d.Outputs,
		InputSrcs: inputs,
		Platform:  d.Platform,
		Builder:   d.Builder,
		Args:      d.Args,
		Env:       d.Env,
	}
	s.n.log.Debug("build with daemon", "drv", req.DrvPath, "inputs", len(inputs))
	br, err := s.c.BuildDerivation(s.ctx, req.DrvPath, basic, worker.BuildNormal, log)
	if err != nil {
		return Result{}, backend(err)
	}
	switch br.Status {
	case worker.Built, worker.Substituted, worker.AlreadyValid, worker.ResolvesToAlreadyValid:
	case worker.PermanentFailure, worker.CachedFailure, worker.TimedOut, worker.OutputRejected,
		worker.LogLimitExceeded, worker.NotDeterministic:
		return Result{}, fmt.Errorf("%w: %s: %s", ErrBuildFailed, br.Status, lastLines([]byte(br.ErrorMsg), 1))
	case worker.DependencyFailed, worker.NoSubstituters:
		// The inputs were valid a moment ago: name what is gone now.
		valid, err := s.c.QueryValidPaths(s.ctx, inputs, false)
		if err != nil {
			return Result{}, backend(err)
		}
		for _, p := range inputs {
			if !slices.Contains(valid, p) {
				s.missing = append(s.missing, p)
			}
		}
		if len(s.missing) > 0 {
			return s.result(nil)
		}
		return Result{}, fmt.Errorf("%w: %s: %s", ErrBackend, br.Status, lastLines([]byte(br.ErrorMsg), 3))
	default:
		return Result{}, fmt.Errorf("%w: %s: %s", ErrBackend, br.Status, lastLines([]byte(br.ErrorMsg), 3))
	}
	if ok, err := s.allValid(want); err != nil || !ok {
		if err != nil {
			return Result{}, err
		}
		return Result{}, fmt.Errorf("%w: outputs not valid after %s", ErrBackend, br.Status)
	}
	return Result{Outputs: want, Substituted: br.Status != worker.Built}, nil
}

// result returns the missing paths, or err.
func (s *session) result(err error) (Result, error) {
	if len(s.missing) > 0 {
		return Result{MissingInputs: s.missing}, ErrMissingInputs
	}
	return Result{}, err
}

// allValid reports whether every path of want is valid in the store.
func (s *session) allValid(want map[string]string) (bool, error) {
	paths := make([]string, 0, len(want))
	for _, p := range want {
		paths = append(paths, p)
	}
	valid, err := s.c.QueryValidPaths(s.ctx, paths, false)
	if err != nil {
		return false, backend(err)
	}
	return len(valid) == len(paths), nil
}

// readDrv parses a .drv from the store or, if it lacks it, from Inputs.
// A .drv neither has is added to s.missing and ErrMissingInputs returned.
func (s *session) readDrv(drvPath string) (*store.Derivation, error) {
	var nar bytes.Buffer
	valid, err := s.c.IsValidPath(s.ctx, drvPath)
	if err != nil {
		return nil, backend(err)
	}
	if valid {
		err = s.c.NarFromPath(s.ctx, drvPath, &limitWriter{w: &nar, n: maxDrvSize})
		if err != nil {
			return nil, backend(err)
		}
	} else {
		rc, _, err := s.open(drvPath)
		if err != nil {
			return nil, err
		}
		_, err = io.Copy(&limitWriter{w: &nar, n: maxDrvSize}, rc)
		rc.Close()
		if err != nil {
			return nil, fmt.Errorf("read %s: %w: %w", drvPath, ErrBackend, err)
		}
	}
	text, err := narFile(&nar)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w: %w", drvPath, ErrBackend, err)
	}
	d, err := store.ParseDerivation(text)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w: %w", drvPath, ErrBackend, err)
	}
	return d, nil
}

// open opens a path of Inputs; a path it lacks goes to s.missing.
func (s *session) open(p string) (io.ReadCloser, PathInfo, error) {
	if s.n.cfg.Inputs == nil {
		s.missing = appendNew(s.missing, p)
		return nil, PathInfo{}, ErrMissingInputs
	}
	rc, info, err := s.n.cfg.Inputs.OpenNAR(s.ctx, p)
	if errors.Is(err, ErrMissingInputs) {
		s.missing = appendNew(s.missing, p)
		return nil, PathInfo{}, err
	}
	if err != nil {
		return nil, PathInfo{}, fmt.Errorf("open %s: %w: %w", p, ErrBackend, err)
	}
	if info.Path != p {
		rc.Close()
		return nil, PathInfo{}, fmt.Errorf("open %s: %w: source answered %s", p, ErrBackend, info.Path)
	}
	return rc, info, nil
}

// narFile returns the contents of a NAR holding one regular file.
func narFile(r io.Reader) ([]byte, error) {
	nr := store.NewNarReader(r)
	h, err := nr.Next()
	if err != nil {
		return nil, err
	}
	if h.Type != store.NarRegular || h.Path != "" {
		return nil, fmt.Errorf("nar holds a %v, not one file", h.Type)
	}
	b, err := io.ReadAll(nr)
	if err != nil {
		return nil, err
	}
	if _, err := nr.Next(); err != io.EOF {
		return nil, fmt.Errorf("nar: trailing data: %v", err)
	}
	return b, nil
}

// ensure makes paths and their closures valid, copying from Inputs what
// the store lacks, references first. Paths no one has go to s.missing.
func (s *session) ensure(paths []string) error {
	valid, err := s.c.QueryValidPaths(s.ctx, paths, false)
	if err != nil {
		return backend(err)
	}
	done := make(map[string]bool, len(paths))
	for _, p := range valid {
		done[p] = true
	}
	for _, p := range paths {
		if err := s.add(p, done); err != nil {
			return err
		}
	}
	return nil
}

// add copies p after its references; done holds the paths known valid
// or being added (a reference cycle other than self is not possible in a
// store).
func (s *session) add(p string, done map[string]bool) error {
	if done[p] {
		return nil
	}
	done[p] = true
	rc, info, err := s.open(p)
	if errors.Is(err, ErrMissingInputs) {
		return nil
	}
	if err != nil {
		return err
	}
	defer rc.Close()
	var refs []string
	for _, r := range info.References {
		if r != p && !done[r] {
			if err := s.n.checkPath(r); err != nil {
				return fmt.Errorf("reference of %s: %w", p, err)
			}
			refs = append(refs, r)
		}
	}
	if len(refs) > 0 {
		valid, err := s.c.QueryValidPaths(s.ctx, refs, false)
		if err != nil {
			return backend(err)
		}
		for _, r := range valid {
			done[r] = true
		}
		for _, r := range refs {
			if err := s.add(r, done); err != nil {
				return err
			}
		}
	}
	if len(s.missing) > 0 {
		return nil // p cannot be registered without its references
	}
	info.Ultimate = false
	if err := s.c.AddToStoreNar(s.ctx, info, rc, false, true); err != nil {
		return fmt.Errorf("add %s: %w", p, backend(err))
	}
	return nil
}

// OutputNAR streams a valid path's NAR from the daemon.
func (n *NixDaemon) OutputNAR(ctx context.Context, storePath string, w io.Writer) error {
	if err := n.checkPath(storePath); err != nil {
		return fmt.Errorf("dump %s: %w", storePath, err)
	}
	c, err := n.pool.Get(ctx)
	if err != nil {
		return fmt.Errorf("dump %s: %w", storePath, err)
	}
	defer n.pool.Put(c)
	if err := c.NarFromPath(ctx, storePath, w); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("dump %s: %w", storePath, ErrCanceled)
		}
		return fmt.Errorf("dump %s: %w", storePath, backend(err))
	}
	return nil
}

// limitWriter fails once more than n bytes were written.
type limitWriter struct {
	w io.Writer
	n int64
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > l.n {
		return 0, fmt.Errorf("more than %d bytes", maxDrvSize)
	}
	l.n -= int64(len(p))
	return l.w.Write(p)
}

// StdioDaemon returns a dial function for DaemonPool that starts
// bin --stdio --store storeURI (bin "" is nix-daemon on PATH) with
// extraConfig as NIX_CONFIG, in a process group of its own at the builds'
// niceness. Such a daemon trusts its client and opens the store itself:
// for a chroot store ("local?root=DIR") the node's user must own DIR, and
// for the machine's store it must be root.
func StdioDaemon(bin, storeURI, extraConfig string) func(context.Context) (io.ReadWriteCloser, error) {
	if bin == "" {
		bin = "nix-daemon"
	}
	return func(ctx context.Context) (io.ReadWriteCloser, error) {
		path, err := exec.LookPath(bin)
		if err != nil {
			return nil, fmt.Errorf("find nix-daemon: %w", err)
		}
		args := []string{"--stdio"}
		if storeURI != "" {
			args = append(args, "--store", storeURI)
		}
		cmd := exec.Command(path, args...)
		env := make([]string, 0, len(os.Environ())+1)
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, "NIX_CONFIG=") {
				env = append(env, kv)
			}
		}
		cmd.Env = append(env, "NIX_CONFIG="+extraConfig)
		rwc, err := worker.StartStdio(cmd)
		if err != nil {
			return nil, err
		}
		// Best effort, as for the nix-store commands.
		_ = syscall.Setpriority(syscall.PRIO_PROCESS, cmd.Process.Pid, buildNice)
		return rwc, nil
	}
}
