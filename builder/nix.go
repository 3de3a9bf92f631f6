package builder

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/drvmesh/drvmesh/store"
)

// NixConfig configures the nix backend.
type NixConfig struct {
	// Store is the store URI passed as --store: "" for the default store
	// (the system daemon), or e.g. "local?root=DIR" for a chroot store.
	Store string
	// StoreDir is the logical store dir; default /nix/store.
	StoreDir string
	// NixStoreBin is the nix-store binary; default "nix-store" on PATH.
	// The nix binary is looked up next to it.
	NixStoreBin string
	// ExtraConfig is appended to the nix.conf settings every command gets
	// (later lines win).
	ExtraConfig string
	// StateDir holds the private HOME and cache of the Nix commands (Nix
	// caches narinfo lookups there). "" makes a temporary one that Close
	// removes.
	StateDir string
	// Logger receives debug lines about the commands run; nil: slog.Default.
	Logger *slog.Logger
}

// Nix builds with nix-store --realise.
type Nix struct {
	cfg      NixConfig
	files    storeFiles
	storeBin string
	nixBin   string
	stateDir string
	ownState bool
	log      *slog.Logger
	// started, if set, receives each command's process group (tests).
	started func(pgid int)

	initMu sync.Mutex
	inited bool // the chroot store's database exists

	cacheMu    sync.Mutex
	idleCaches []string // narinfo cache dirs no build uses now
}

var _ Builder = (*Nix)(nil)

// NewNix checks the configuration and finds the Nix tools. It starts
// nothing.
func NewNix(cfg NixConfig) (*Nix, error) {
	if cfg.StoreDir == "" {
		cfg.StoreDir = "/nix/store"
	}
	cfg.StoreDir = strings.TrimSuffix(cfg.StoreDir, "/")
	root, _, err := store.LocalStoreRoot(cfg.Store)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	if cfg.NixStoreBin == "" {
		cfg.NixStoreBin = "nix-store"
	}
	storeBin, err := exec.LookPath(cfg.NixStoreBin)
	if err != nil {
		return nil, fmt.Errorf("find nix-store: %w: %v", ErrBackend, err)
	}
	nixBin, err := exec.LookPath(filepath.Join(filepath.Dir(storeBin), "nix"))
	if err != nil {
		return nil, fmt.Errorf("find nix: %w: %v", ErrBackend, err)
	}
	n := &Nix{
		cfg:      cfg,
		files:    storeFiles{storeDir: cfg.StoreDir, root: root},
		storeBin: storeBin,
		nixBin:   nixBin,
		stateDir: cfg.StateDir,
		log:      cfg.Logger,
	}
	if n.log == nil {
		n.log = slog.Default()
	}
	if n.stateDir == "" {
		dir, err := os.MkdirTemp("", "drvmesh-nix-")
		if err != nil {
			return nil, fmt.Errorf("make state dir: %w: %v", ErrBackend, err)
		}
		n.stateDir, n.ownState = dir, true
	}
	// Caches left by an earlier run are reused.
	n.idleCaches, _ = filepath.Glob(filepath.Join(n.stateDir, "cache-*"))
	return n, nil
}

// Name implements Builder.
func (n *Nix) Name() string { return "nix" }

// Close removes the temporary state dir, if NewNix made one.
func (n *Nix) Close() error {
	if n.ownState {
		if err := os.RemoveAll(n.stateDir); err != nil {
			return fmt.Errorf("remove state dir: %w", err)
		}
	}
	return nil
}

// OutputNAR dumps a built output from its files (nix-store --dump would
// ignore --store).
func (n *Nix) OutputNAR(ctx context.Context, storePath string, w io.Writer) error {
	return n.files.dumpOutput(ctx, storePath, w)
}

// nixConf is the nix.conf text every command of req gets.
func (n *Nix) nixConf(req Request) string {
	var b strings.Builder
	b.WriteString("experimental-features = nix-command\n")
	b.WriteString("sandbox = true\nextra-sandbox-paths = /bin /usr /lib /lib64\nbuild-users-group =\n")
	if req.Substituter != "" {
		fmt.Fprintf(&b, "substituters = %s\n", req.Substituter)
		fmt.Fprintf(&b, "trusted-public-keys = %s\n", strings.Join(req.TrustedKeys, " "))
		b.WriteString("require-sigs = true\nfallback = false\n")
		// Inputs are uploaded to the node just before a build: never
		// trust a cached "no such path".
		b.WriteString("narinfo-cache-negative-ttl = 0\nconnect-timeout = 10\n")
	}
	b.WriteString(n.cfg.ExtraConfig)
	b.WriteString("\n")
	return b.String()
}

func (n *Nix) env(req Request) []string {
	env := make([]string, 0, len(os.Environ())+3)
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if k == "NIX_CONFIG" || k == "HOME" || k == "XDG_CACHE_HOME" {
			continue
		}
		env = append(env, kv)
	}
	return append(env,
		"NIX_CONFIG="+n.nixConf(req),
		"HOME="+filepath.Join(n.stateDir, "home"),
		"XDG_CACHE_HOME="+cmp.Or(req.cacheDir, filepath.Join(n.stateDir, "cache")),
	)
}

func (n *Nix) storeArgs() []string {
	if n.cfg.Store == "" {
		return nil
	}
	return []string{"--store", n.cfg.Store}
}

func (n *Nix) command(req Request, log io.Writer, bin string, args ...string) command {
	n.log.Debug("run nix command", "bin", bin, "args", args)
	return command{path: bin, args: args, env: n.env(req), log: log, started: n.started}
}

// Build fetches the .drv and the inputs from req.Substituter, then builds.
func (n *Nix) Build(ctx context.Context, req Request, log io.Writer) (Result, error) {
	if err := n.files.checkPath(req.DrvPath); err != nil || !strings.HasSuffix(req.DrvPath, ".drv") {
		return Result{}, fmt.Errorf("build %s: %w", req.DrvPath, ErrBadRequest)
	}
	// Builds running at once each have a narinfo cache of their own: Nix
	// commands that share one race on its SQLite file ("constraint
	// failed" when one re-registers the cache under another's feet).
	// Caches are reused by later builds, since making one costs a new
	// SQLite database.
	cacheDir, err := n.takeCacheDir()
	if err != nil {
		return Result{}, fmt.Errorf("build %s: %w: %v", req.DrvPath, ErrBackend, err)
	}
	defer n.giveCacheDir(cacheDir)
	req.cacheDir = cacheDir
	if err := n.initStore(ctx, req); err != nil {
		return Result{}, fmt.Errorf("build %s: %w", req.DrvPath, err)
	}
	if req.Prepared {
		return n.realise(ctx, req, nil, log)
	}
	if req.Substituter != "" {
		if res, err := n.fetchDrv(ctx, req, log); err != nil {
			return res, fmt.Errorf("fetch %s: %w", req.DrvPath, err)
		}
	}
	d, err := n.files.readDerivation(req.DrvPath)
	if err != nil {
		return Result{}, fmt.Errorf("build %s: %w", req.DrvPath, err)
	}
	want, err := wantedOutputs(d, req.DrvPath, req.Outputs)
	if err != nil {
		return Result{}, fmt.Errorf("build: %w", err)
	}
	inputs, err := n.files.inputPaths(d)
	if err != nil {
		return Result{}, fmt.Errorf("build %s: %w", req.DrvPath, err)
	}
	if res, err := n.fetchInputs(ctx, req, inputs, log); err != nil {
		return res, fmt.Errorf("fetch inputs of %s: %w", req.DrvPath, err)
	}
	return n.realise(ctx, req, want, log)
}

// takeCacheDir returns a narinfo cache dir no running build uses.
func (n *Nix) takeCacheDir() (string, error) {
	n.cacheMu.Lock()
	defer n.cacheMu.Unlock()
	if k := len(n.idleCaches); k > 0 {
		dir := n.idleCaches[k-1]
		n.idleCaches = n.idleCaches[:k-1]
		return dir, nil
	}
	if err := os.MkdirAll(n.stateDir, 0o755); err != nil {
		return "", err
	}
	return os.MkdirTemp(n.stateDir, "cache-")
}

// giveCacheDir lets a later build use dir.
func (n *Nix) giveCacheDir(dir string) {
	n.cacheMu.Lock()
	n.idleCaches = append(n.idleCaches, dir)
	n.cacheMu.Unlock()
}

// initStore creates a chroot store's database once, before builds run
// at once: Nix commands that find no database create it, and two doing so
// together fail with "SQLite database ... is busy".
func (n *Nix) initStore(ctx context.Context, req Request) error {
	if n.files.root == "" {
		return nil
	}
	n.initMu.Lock()
	defer n.initMu.Unlock()
	if n.inited {
		return nil
	}
	res, err := n.command(req, io.Discard, n.storeBin, append(n.storeArgs(), "--init")...).run(ctx)
	if err != nil {
		return err
	}
	if res.canceled {
		return ErrCanceled
	}
	if res.exitCode != 0 {
		return fmt.Errorf("nix-store --init: %w: %s", ErrBackend, lastLines(res.output, 3))
	}
	n.inited = true
	return nil
}

var (
	// nix copy: a path the substituter does not have.
	reNotValid = regexp.MustCompile(`path '([^']+)' is not valid`)
	// a NAR the substituter announced but could not serve.
	reNoFile = regexp.MustCompile(`does not exist in binary cache`)
	// a path no substituter could provide during a build.
	reNoSubstituter = regexp.MustCompile("path [`']([^'`]+)' is required, but there is no substituter that can build it")
)

// fetchDrv copies the .drv and its closure (input .drvs and sources) from
// the substituter; nix-store --realise would also substitute it, but
// would then build input derivations it cannot substitute.
func (n *Nix) fetchDrv(ctx context.Context, req Request, log io.Writer) (Result, error) {
	args := []string{"copy", "--derivation", "--from", req.Substituter}
	if n.cfg.Store != "" {
		args = append(args, "--to", n.cfg.Store)
	}
	res, err := n.command(req, log, n.nixBin, append(args, req.DrvPath)...).run(ctx)
	if err != nil {
		return Result{}, err
	}
	switch {
	case res.canceled:
		return Result{}, ErrCanceled
	case res.exitCode == 0:
		return Result{}, nil
	}
	var missing []string
	for _, m := range reNotValid.FindAllSubmatch(res.output, -1) {
		missing = appendNew(missing, string(m[1]))
	}
	if len(missing) == 0 && reNoFile.Match(res.output) {
		missing = []string{req.DrvPath}
	}
	if len(missing) > 0 {
		return Result{MissingInputs: missing}, ErrMissingInputs
	}
	return Result{}, fmt.Errorf("nix copy: %w: %s", ErrBackend, lastLines(res.output, 3))
}

// fetchInputs substitutes the input paths (a no-op for valid ones). It
// never builds: plain paths can only be substituted, so an input the mesh
// lacks shows up as missing instead of being rebuilt here.
func (n *Nix) fetchInputs(ctx context.Context, req Request, inputs []string, log io.Writer) (Result, error) {
	if len(inputs) == 0 {
		return Result{}, nil
	}
	args := append(n.storeArgs(), "--realise", "--keep-going")
	res, err := n.command(req, log, n.storeBin, append(args, inputs...)...).run(ctx)
	if err != nil {
		return Result{}, err
	}
	switch {
	case res.canceled:
		return Result{}, ErrCanceled
	case res.exitCode == 0:
		return Result{}, nil
	}
	missing, err := n.invalid(ctx, req, inputs)
	if err != nil {
		return Result{}, err
	}
	if len(missing) > 0 {
		return Result{MissingInputs: missing}, ErrMissingInputs
	}
	return Result{}, fmt.Errorf("nix-store --realise: %w: %s", ErrBackend, lastLines(res.output, 3))
}

// invalid returns the paths that are not valid in the store.
func (n *Nix) invalid(ctx context.Context, req Request, paths []string) ([]string, error) {
	args := append(n.storeArgs(), "--check-validity", "--print-invalid")
	res, err := n.command(req, io.Discard, n.storeBin, append(args, paths...)...).run(ctx)
	if err != nil {
		return nil, err
	}
	if res.canceled {
		return nil, ErrCanceled
	}
	if res.exitCode != 0 {
		return nil, fmt.Errorf("nix-store --check-validity: %w: %s", ErrBackend, lastLines(res.output, 3))
	}
	return strings.Fields(string(res.stdout)), nil
}

// Nix's exit codes for a failed build (1 is any other error).
const (
	nixExitBuildFailed = 100 // 100 + bits: timeout 1, hash mismatch 2, not deterministic 4
	nixExitBuildMax    = 107
)

// realise builds the wanted outputs; a nil want is read from the .drv
// once the realise has substituted it.
func (n *Nix) realise(ctx context.Context, req Request, want map[string]string, log io.Writer) (Result, error) {
	target := req.DrvPath
	if len(req.Outputs) > 0 {
		target += "!" + strings.Join(req.Outputs, ",")
	}
	args := append(n.storeArgs(), "--realise", target)
	if req.MaxSilent > 0 {
		args = append(args, "--max-silent-time", seconds(req.MaxSilent))
	}
	if req.Timeout > 0 {
		args = append(args, "--timeout", seconds(req.Timeout))
	}
	res, err := n.command(req, log, n.storeBin, args...).run(ctx)
	if err != nil {
		return Result{}, fmt.Errorf("build %s: %w", req.DrvPath, err)
	}
	switch {
	case res.canceled:
		return Result{}, fmt.Errorf("build %s: %w", req.DrvPath, ErrCanceled)
	case res.exitCode >= nixExitBuildFailed && res.exitCode <= nixExitBuildMax:
		return Result{}, fmt.Errorf("build %s: %w: %s", req.DrvPath, ErrBuildFailed, lastLines(res.output, 1))
	case res.exitCode != 0:
		var missing []string
		for _, m := range reNoSubstituter.FindAllSubmatch(res.output, -1) {
			missing = appendNew(missing, string(m[1]))
		}
		if len(missing) > 0 {
			return Result{MissingInputs: missing}, fmt.Errorf("build %s: %w", req.DrvPath, ErrMissingInputs)
		}
		return Result{}, fmt.Errorf("build %s: %w: %s", req.DrvPath, ErrBackend, lastLines(res.output, 3))
	}
	if want == nil { // prepared: the .drv arrived with the realise
		d, err := n.files.readDerivation(req.DrvPath)
		if err != nil {
			return Result{}, fmt.Errorf("build %s: %w", req.DrvPath, err)
		}
		if want, err = wantedOutputs(d, req.DrvPath, req.Outputs); err != nil {
			return Result{}, fmt.Errorf("build: %w", err)
		}
	}
	outs, err := n.files.matchOutputs(want, res.stdout)
	if err != nil {
		return Result{}, fmt.Errorf("build %s: %w", req.DrvPath, err)
	}
	announce := []byte("building '" + req.DrvPath + "'")
	built := bytes.Contains(res.head, announce) || bytes.Contains(res.output, announce)
	return Result{Outputs: outs, Substituted: !built}, nil
}

// seconds formats d as whole seconds, at least 1.
func seconds(d time.Duration) string {
	s := int64((d + time.Second - 1) / time.Second)
	return strconv.FormatInt(max(s, 1), 10)
}

func appendNew(list []string, s string) []string {
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}
