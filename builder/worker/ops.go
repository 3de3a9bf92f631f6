package worker

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"
	"time"

	"github.com/drvmesh/drvmesh/store"
)

// Operation codes (worker-protocol.hh).
const (
	opIsValidPath      = 1
	opSetOptions       = 19
	opQueryPathInfo    = 26
	opQueryValidPaths  = 31
	opBuildDerivation  = 36
	opNarFromPath      = 38
	opAddToStoreNar    = 39
	verbosityError     = 0 // lvlError: also asks for verbose build output
	defaultVerbosity   = lvlInfo
	maxBuildOutputsLen = 1 << 16
)

// Options are the client settings of SetOptions. Settings the daemon
// restricts (most overrides, substituters outside its trusted list) are
// ignored for users it does not trust.
type Options struct {
	KeepFailed     bool
	KeepGoing      bool
	TryFallback    bool
	Verbosity      uint64        // Nix levels: 0 error … 3 info (default) … 7 vomit
	MaxBuildJobs   uint64        // builds at once; 0 means 1
	MaxSilentTime  time.Duration // 0: no limit
	BuildTimeout   time.Duration // sent as the "timeout" override; 0: none
	BuildCores     uint64        // 0: all cores
	UseSubstitutes bool
	// Overrides are further nix.conf settings, e.g. "sandbox" or
	// "substituters"; they win over the fields above.
	Overrides map[string]string
}

// SetOptions sends the client settings for the operations that follow.
func (c *Conn) SetOptions(ctx context.Context, o Options) error {
	return c.op(ctx, "set options", c.idle(), func() error {
		w := &c.w
		w.u64(opSetOptions)
		w.bool(o.KeepFailed)
		w.bool(o.KeepGoing)
		w.bool(o.TryFallback)
		verbosity := o.Verbosity
		if verbosity == 0 {
			verbosity = defaultVerbosity
		}
		w.u64(verbosity)
		w.u64(max(o.MaxBuildJobs, 1))
		w.u64(wholeSeconds(o.MaxSilentTime))
		w.u64(1)              // obsolete useBuildHook
		w.u64(verbosityError) // verbose build: the build log is sent
		w.u64(0)              // obsolete log type
		w.u64(0)              // obsolete print build trace
		w.u64(o.BuildCores)
		w.bool(o.UseSubstitutes)
		if c.minor() >= 12 {
			over := map[string]string{}
			if o.BuildTimeout > 0 {
				over["timeout"] = strconv.FormatUint(wholeSeconds(o.BuildTimeout), 10)
			}
			for k, v := range o.Overrides {
				over[k] = v
			}
			keys := make([]string, 0, len(over))
			for k := range over {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			w.u64(uint64(len(keys)))
			for _, k := range keys {
				w.str(k)
				w.str(over[k])
			}
		}
		return c.flushStderr(nil, nil)
	})
}

// wholeSeconds rounds d up to whole seconds.
func wholeSeconds(d time.Duration) uint64 {
	if d <= 0 {
		return 0
	}
	return uint64((d + time.Second - 1) / time.Second)
}

// IsValidPath reports whether path is valid in the daemon's store.
func (c *Conn) IsValidPath(ctx context.Context, path string) (bool, error) {
	var valid bool
	err := c.op(ctx, "is valid path", c.idle(), func() error {
		c.w.u64(opIsValidPath)
		c.w.str(path)
		if err := c.flushStderr(nil, nil); err != nil {
			return err
		}
		var err error
		valid, err = c.r.bool()
		return err
	})
	return valid, err
}

// QueryValidPaths returns the paths among paths that are valid; with
// substitute, the daemon first tries to substitute the others (1.27+).
func (c *Conn) QueryValidPaths(ctx context.Context, paths []string, substitute bool) ([]string, error) {
	var valid []string
	err := c.op(ctx, "query valid paths", c.idle(), func() error {
		c.w.u64(opQueryValidPaths)
		c.w.strs(paths)
		if c.minor() >= 27 {
			c.w.bool(substitute)
		}
		if err := c.flushStderr(nil, nil); err != nil {
			return err
		}
		var err error
		valid, err = c.r.strs(maxPathLen)
		return err
	})
	return valid, err
}

// PathInfo is a valid path's metadata.
type PathInfo struct {
	Path             string
	Deriver          string // "" when unknown
	NarHash          store.Hash
	References       []string
	RegistrationTime time.Time // whole seconds; zero when unknown
	NarSize          uint64
	Ultimate         bool     // built locally, trusted without signatures
	Sigs             []string // "name:base64" signatures
	CA               string   // content address, "" for input-addressed paths
}

// QueryPathInfo returns the metadata of path; ok is false when the path
// is not valid.
func (c *Conn) QueryPathInfo(ctx context.Context, path string) (info PathInfo, ok bool, err error) {
	err = c.op(ctx, "query path info", c.idle(), func() error {
		c.w.u64(opQueryPathInfo)
		c.w.str(path)
		if err := c.flushStderr(nil, nil); err != nil {
			return err
		}
		if c.minor() >= 17 {
			if ok, err = c.r.bool(); err != nil || !ok {
				return err
			}
		}
		ok = true
		info, err = c.readPathInfo(path)
		return err
	})
	return info, ok, err
}

func (c *Conn) readPathInfo(path string) (PathInfo, error) {
	info := PathInfo{Path: path}
	var err error
	if info.Deriver, err = c.r.str(maxPathLen); err != nil {
		return info, err
	}
	hash, err := c.r.str(maxPathLen)
	if err != nil {
		return info, err
	}
	if info.NarHash, err = parseNarHash(hash); err != nil {
		return info, err
	}
	if info.References, err = c.r.strs(maxPathLen); err != nil {
		return info, err
	}
	reg, err := c.r.u64()
	if err != nil {
		return info, err
	}
	if reg > 0 && reg < 1<<40 {
		info.RegistrationTime = time.Unix(int64(reg), 0)
	}
	if info.NarSize, err = c.r.u64(); err != nil {
		return info, err
	}
	if c.minor() >= 16 {
		if info.Ultimate, err = c.r.bool(); err != nil {
			return info, err
		}
		if info.Sigs, err = c.r.strs(maxMsgLen); err != nil {
			return info, err
		}
		if info.CA, err = c.r.str(maxMsgLen); err != nil {
			return info, err
		}
	}
	return info, nil
}

// parseNarHash accepts a bare SHA-256 digest in any encoding, or one
// prefixed with "sha256:".
func parseNarHash(s string) (store.Hash, error) {
	if len(s) > 7 && s[:7] == "sha256:" {
		s = s[7:]
	}
	h, err := store.ParseHashAs("sha256", s)
	if err != nil {
		return store.Hash{}, fmt.Errorf("%w: nar hash: %w", ErrProtocol, err)
	}
	return h, nil
}

// AddToStoreNar adds a path from its NAR. The daemon checks the NAR
// against info.NarHash and info.NarSize. dontCheckSigs is honoured for
// trusted users only; others need a signature the daemon trusts or a
// content address. It needs protocol 1.23 (Nix 2.3), which frames the NAR.
func (c *Conn) AddToStoreNar(ctx context.Context, info PathInfo, nar io.Reader, repair, dontCheckSigs bool) error {
	return c.op(ctx, "add to store nar", c.idle(), func() error {
		if c.minor() < 23 {
			return fmt.Errorf("%w: framed nar needs 1.23, daemon has %#x", ErrVersion, c.version)
		}
		w := &c.w
		w.u64(opAddToStoreNar)
		w.str(info.Path)
		w.str(info.Deriver)
		w.str(info.NarHash.Hex())
		w.strs(info.References)
		var reg uint64
		if !info.RegistrationTime.IsZero() {
			reg = uint64(max(info.RegistrationTime.Unix(), 0))
		}
		w.u64(reg)
		w.u64(info.NarSize)
		w.bool(info.Ultimate)
		w.strs(info.Sigs)
		w.str(info.CA)
		w.bool(repair)
		w.bool(dontCheckSigs)
		if err := w.flush(); err != nil {
			return err
		}
		// The daemon may log while it reads the frames: read its frames
		// while sending, as Nix's own client does.
		done := make(chan error, 1)
		go func() { done <- c.stderr(nil, nil) }()
		werr := c.sendFramed(nar)
		if werr != nil {
			// The daemon would wait for the rest of the frames: close.
			c.kill()
		}
		rerr := <-done
		if werr != nil {
			return werr
		}
		return rerr
	})
}

// sendFramed writes r as (length, bytes) frames ended by an empty one.
func (c *Conn) sendFramed(r io.Reader) error {
	buf := make([]byte, ioChunk)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			c.w.u64(uint64(n))
			if _, werr := c.w.w.Write(buf[:n]); werr != nil {
				return fmt.Errorf("write to daemon: %w", werr)
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("read nar: %w", err)
		}
	}
	c.w.u64(0)
	return c.w.flush()
}

// BuildMode is how BuildDerivation builds.
type BuildMode uint64

// Build modes.
const (
	BuildNormal BuildMode = 0
	BuildRepair BuildMode = 1
	BuildCheck  BuildMode = 2
)

// BasicDerivation is a derivation as BuildDerivation sends it: no input
// derivations; InputSrcs must list every store path the build needs (the
// sources and the input derivations' outputs), all valid in the store.
type BasicDerivation struct {
	Outputs   []store.Output // sorted by name, fields as in the .drv
	InputSrcs []string       // sorted
	Platform  string
	Builder   string
	Args      []string
	Env       []store.EnvVar // sorted by key
}

// BuildDerivation builds drv, whose .drv path is drvPath (the daemon takes
// the name from it; the file need not be in the store), streaming the
// build log to log. Only trusted users may build input-addressed
// derivations this way. No idle timeout applies: a build may be silent
// for as long as its max-silent-time allows; ctx bounds the wait.
func (c *Conn) BuildDerivation(ctx context.Context, drvPath string, drv BasicDerivation, mode BuildMode, log io.Writer) (BuildResult, error) {
	var res BuildResult
	err := c.op(ctx, "build derivation", 0, func() error {
		w := &c.w
		w.u64(opBuildDerivation)
		w.str(drvPath)
		w.u64(uint64(len(drv.Outputs)))
		for _, o := range drv.Outputs {
			w.str(o.Name)
			w.str(o.Path)
			w.str(o.HashAlgo)
			w.str(o.Hash)
		}
		w.strs(drv.InputSrcs)
		w.str(drv.Platform)
		w.str(drv.Builder)
		w.strs(drv.Args)
		w.u64(uint64(len(drv.Env)))
		for _, e := range drv.Env {
			w.str(e.Key)
			w.str(e.Value)
		}
		w.u64(uint64(mode))
		if err := c.flushStderr(log, nil); err != nil {
			return err
		}
		var err error
		res, err = c.readBuildResult()
		return err
	})
	return res, err
}

// BuildStatus is a BuildResult's status (build-result.hh).
type BuildStatus uint64

// Build statuses.
const (
	Built                  BuildStatus = 0
	Substituted            BuildStatus = 1
	AlreadyValid           BuildStatus = 2
	PermanentFailure       BuildStatus = 3
	InputRejected          BuildStatus = 4
	OutputRejected         BuildStatus = 5
	TransientFailure       BuildStatus = 6
	CachedFailure          BuildStatus = 7
	TimedOut               BuildStatus = 8
	MiscFailure            BuildStatus = 9
	DependencyFailed       BuildStatus = 10
	LogLimitExceeded       BuildStatus = 11
	NotDeterministic       BuildStatus = 12
	ResolvesToAlreadyValid BuildStatus = 13
	NoSubstituters         BuildStatus = 14
)

var statusNames = [...]string{"Built", "Substituted", "AlreadyValid", "PermanentFailure",
	"InputRejected", "OutputRejected", "TransientFailure", "CachedFailure", "TimedOut",
	"MiscFailure", "DependencyFailed", "LogLimitExceeded", "NotDeterministic",
	"ResolvesToAlreadyValid", "NoSubstituters"}

func (s BuildStatus) String() string {
	if int(s) < len(statusNames) {
		return statusNames[s]
	}
	return "BuildStatus(" + strconv.FormatUint(uint64(s), 10) + ")"
}

// Success reports whether the outputs are valid after the build.
func (s BuildStatus) Success() bool {
	return s == Built || s == Substituted || s == AlreadyValid || s == ResolvesToAlreadyValid
}

// BuildResult is what BuildDerivation returns.
type BuildResult struct {
	Status             BuildStatus
	ErrorMsg           string
	TimesBuilt         uint64    // 1.29+
	IsNonDeterministic bool      // 1.29+
	StartTime          time.Time // 1.29+
	StopTime           time.Time // 1.29+
	// BuiltOutputs maps a DrvOutput id ("sha256:…!out") to its
	// Realisation in JSON (1.28+).
	BuiltOutputs map[string]string
}

func (c *Conn) readBuildResult() (BuildResult, error) {
	var res BuildResult
	st, err := c.r.u64()
	if err != nil {
		return res, err
	}
	res.Status = BuildStatus(st)
	if res.ErrorMsg, err = c.r.str(maxMsgLen); err != nil {
		return res, err
	}
	if c.minor() >= 29 {
		if res.TimesBuilt, err = c.r.u64(); err != nil {
			return res, err
		}
		if res.IsNonDeterministic, err = c.r.bool(); err != nil {
			return res, err
		}
		var t [2]uint64
		for i := range t {
			if t[i], err = c.r.u64(); err != nil {
				return res, err
			}
		}
		if t[0] > 0 && t[0] < 1<<40 {
			res.StartTime = time.Unix(int64(t[0]), 0)
		}
		if t[1] > 0 && t[1] < 1<<40 {
			res.StopTime = time.Unix(int64(t[1]), 0)
		}
	}
	if c.minor() >= 28 {
		n, err := c.r.u64()
		if err != nil {
			return res, err
		}
		if n > maxBuildOutputsLen {
			return res, fmt.Errorf("%w: %d built outputs", ErrProtocol, n)
		}
		res.BuiltOutputs = make(map[string]string, min(n, 64))
		for range n {
			id, err := c.r.str(maxMsgLen)
			if err != nil {
				return res, err
			}
			real, err := c.r.str(maxMsgLen)
			if err != nil {
				return res, err
			}
			res.BuiltOutputs[id] = real
		}
	}
	return res, nil
}

// NarFromPath writes the NAR serialisation of a valid path to w. The
// daemon sends the NAR bare, so its end is found by parsing it.
func (c *Conn) NarFromPath(ctx context.Context, path string, w io.Writer) error {
	return c.op(ctx, "nar from path", c.idle(), func() error {
		c.w.u64(opNarFromPath)
		c.w.str(path)
		if err := c.flushStderr(nil, nil); err != nil {
			return err
		}
		return c.copyNAR(w)
	})
}
