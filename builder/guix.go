package builder

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"regexp"
	"strings"
)

// GuixConfig configures the guix backend.
type GuixConfig struct {
	// GuixBin is the guix command; default "guix" on PATH.
	GuixBin string
	// StoreDir is the logical store dir; default /gnu/store.
	StoreDir string
	// Root is a directory the store dir lives under on this host; "" (the
	// usual case) means the store dir itself.
	Root string
	// ExtraArgs are added to every guix build command line.
	ExtraArgs []string
	// Logger receives debug lines about the commands run; nil: slog.Default.
	Logger *slog.Logger
}

// Guix builds with guix build against the system guix-daemon.
type Guix struct {
	cfg   GuixConfig
	files storeFiles
	bin   string
	log   *slog.Logger
}

var _ Builder = (*Guix)(nil)

// NewGuix checks the configuration and finds guix. It starts nothing.
func NewGuix(cfg GuixConfig) (*Guix, error) {
	if cfg.StoreDir == "" {
		cfg.StoreDir = "/gnu/store"
	}
	cfg.StoreDir = strings.TrimSuffix(cfg.StoreDir, "/")
	if cfg.GuixBin == "" {
		cfg.GuixBin = "guix"
	}
	bin, err := exec.LookPath(cfg.GuixBin)
	if err != nil {
		return nil, fmt.Errorf("find guix: %w: %v", ErrBackend, err)
	}
	g := &Guix{cfg: cfg, files: storeFiles{storeDir: cfg.StoreDir, root: cfg.Root}, bin: bin, log: cfg.Logger}
	if g.log == nil {
		g.log = slog.Default()
	}
	return g, nil
}

// Name implements Builder.
func (g *Guix) Name() string { return "guix" }

// Close implements Builder.
func (g *Guix) Close() error { return nil }

// OutputNAR dumps a built output from its files.
func (g *Guix) OutputNAR(ctx context.Context, storePath string, w io.Writer) error {
	return g.files.dumpOutput(ctx, storePath, w)
}

// buildArgs is the guix command line for req.
func (g *Guix) buildArgs(req Request) []string {
	args := []string{"build", "--no-offload"}
	if req.Substituter != "" {
		args = append(args, "--substitute-urls="+req.Substituter)
	}
	if req.MaxSilent > 0 {
		args = append(args, "--max-silent-time="+seconds(req.MaxSilent))
	}
	if req.Timeout > 0 {
		args = append(args, "--timeout="+seconds(req.Timeout))
	}
	args = append(args, g.cfg.ExtraArgs...)
	return append(args, req.DrvPath)
}

var (
	// guix-daemon (and Nix) messages naming a path that could not be had.
	reGuixMissing = regexp.MustCompile("(?:path [`']([^'`]+)' is required, but there is no substituter that can build it|cannot build missing derivation [`']([^'`]+)')")
	// guix build: the derivation's builder failed.
	reGuixFailed = regexp.MustCompile("build of [`']?[^'` ]+\\.drv[`']? failed")
)

// Build runs guix build. Guix builds every output of the derivation;
// Result.Outputs holds the requested ones. TrustedKeys are not used: Guix
// trusts keys system-wide (see the package doc).
func (g *Guix) Build(ctx context.Context, req Request, log io.Writer) (Result, error) {
	if err := g.files.checkPath(req.DrvPath); err != nil || !strings.HasSuffix(req.DrvPath, ".drv") {
		return Result{}, fmt.Errorf("build %s: %w", req.DrvPath, ErrBadRequest)
	}
	args := g.buildArgs(req)
	g.log.Debug("run guix command", "bin", g.bin, "args", args)
	res, err := command{path: g.bin, args: args, env: os.Environ(), log: log}.run(ctx)
	if err != nil {
		return Result{}, fmt.Errorf("build %s: %w", req.DrvPath, err)
	}
	if res.canceled {
		return Result{}, fmt.Errorf("build %s: %w", req.DrvPath, ErrCanceled)
	}
	if res.exitCode != 0 {
		all := append(append([]byte(nil), res.head...), res.output...)
		var missing []string
		for _, m := range reGuixMissing.FindAllSubmatch(all, -1) {
			missing = appendNew(missing, string(m[1])+string(m[2]))
		}
		if len(missing) > 0 {
			return Result{MissingInputs: missing}, fmt.Errorf("build %s: %w", req.DrvPath, ErrMissingInputs)
		}
		if reGuixFailed.Match(res.output) {
			return Result{}, fmt.Errorf("build %s: %w: %s", req.DrvPath, ErrBuildFailed, lastLines(res.output, 1))
		}
		return Result{}, fmt.Errorf("build %s: %w: %s", req.DrvPath, ErrBackend, lastLines(res.output, 3))
	}
	d, err := g.files.readDerivation(req.DrvPath)
	if err != nil {
		return Result{}, fmt.Errorf("build %s: %w", req.DrvPath, err)
	}
	want, err := wantedOutputs(d, req.DrvPath, req.Outputs)
	if err != nil {
		return Result{}, fmt.Errorf("build: %w", err)
	}
	outs, err := g.files.matchOutputs(want, res.stdout)
	if err != nil {
		return Result{}, fmt.Errorf("build %s: %w", req.DrvPath, err)
	}
	announce := []byte("building " + req.DrvPath)
	built := bytes.Contains(res.head, announce) || bytes.Contains(res.output, announce)
	return Result{Outputs: outs, Substituted: !built}, nil
}
