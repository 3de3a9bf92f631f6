package builder

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/drvmesh/drvmesh/store"
)

// storeFiles maps logical store paths to the files that hold them: the
// path itself, or under a chroot store's root.
type storeFiles struct {
	storeDir string // logical store dir, e.g. /nix/store
	root     string // "" or the chroot root
}

// physical returns the host path of a logical store path.
func (s storeFiles) physical(p string) string {
	if s.root == "" {
		return p
	}
	return filepath.Join(s.root, p)
}

// checkPath validates that p is a top-level path of the store.
func (s storeFiles) checkPath(p string) error {
	if _, err := store.ParseStorePath(s.storeDir, p); err != nil {
		return fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	return nil
}

// readDerivation parses a .drv from the store's files.
func (s storeFiles) readDerivation(drvPath string) (*store.Derivation, error) {
	b, err := os.ReadFile(s.physical(drvPath))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w: %v", drvPath, ErrBackend, err)
	}
	d, err := store.ParseDerivation(b)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w: %w", drvPath, ErrBackend, err)
	}
	return d, nil
}

// wantedOutputs maps the requested output names (all when names is empty)
// to their paths in d.
func wantedOutputs(d *store.Derivation, drvPath string, names []string) (map[string]string, error) {
	want := make(map[string]string)
	if len(names) == 0 {
		names = d.OutputNames()
	}
	for _, n := range names {
		o, ok := d.Output(n)
		if !ok {
			return nil, fmt.Errorf("%s has no output %q: %w", drvPath, n, ErrBadRequest)
		}
		want[n] = o.Path
	}
	return want, nil
}

// inputPaths lists what building d needs in the store: its input sources
// and the wanted outputs of its input derivations.
func (s storeFiles) inputPaths(d *store.Derivation) ([]string, error) {
	paths := append([]string(nil), d.InputSrcs...)
	for _, drv := range d.InputDrvPaths() {
		in, err := s.readDerivation(drv)
		if err != nil {
			return nil, err
		}
		for _, name := range d.InputDrvs[drv] {
			o, ok := in.Output(name)
			if !ok {
				return nil, fmt.Errorf("input %s has no output %q: %w", drv, name, ErrBackend)
			}
			if o.Path != "" { // content-addressed outputs have no path yet
				paths = append(paths, o.Path)
			}
		}
	}
	return paths, nil
}

// matchOutputs checks the paths a tool printed against the wanted
// outputs and that each exists on disk.
func (s storeFiles) matchOutputs(want map[string]string, stdout []byte) (map[string]string, error) {
	printed := make(map[string]bool)
	for _, line := range strings.Split(string(stdout), "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, s.storeDir+"/") {
			printed[line] = true
		}
	}
	for name, p := range want {
		if !printed[p] {
			return nil, fmt.Errorf("output %s (%s) not reported: %w", name, p, ErrBackend)
		}
		if _, err := os.Lstat(s.physical(p)); err != nil {
			return nil, fmt.Errorf("output %s: %w: %v", name, ErrBackend, err)
		}
	}
	return want, nil
}

// dumpOutput writes the NAR of a store path from its files, stopping when
// ctx ends.
func (s storeFiles) dumpOutput(ctx context.Context, storePath string, w io.Writer) error {
	if err := s.checkPath(storePath); err != nil {
		return fmt.Errorf("dump %s: %w", storePath, err)
	}
	if err := store.DumpPath(ctxWriter{ctx: ctx, w: w}, s.physical(storePath)); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("dump %s: %w", storePath, ErrCanceled)
		}
		return fmt.Errorf("dump %s: %w", storePath, err)
	}
	return nil
}

// ctxWriter fails writes once its context is done.
type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (c ctxWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.w.Write(p)
}
