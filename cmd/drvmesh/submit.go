package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/drvmesh/drvmesh/api"
	"github.com/drvmesh/drvmesh/store"
)

func init() {
	register("submit", "upload what the mesh lacks of the derivations' closures and create builds", runSubmit)
}

func runSubmit(args []string) error {
	fs := newFlags("submit")
	asJSON := fs.Bool("json", false, "print JSON")
	priority := fs.Int("priority", 0, "higher builds first")
	var tags multiFlag
	fs.Var(&tags, "tag", "tag k=v (repeatable)")
	closure := fs.Bool("closure", false, "also build every input derivation whose outputs the mesh lacks")
	ignore := fs.Bool("ignore-if-built", false, "return the existing successful build instead of a new one")
	deferUntil := fs.String("defer-until", "", "do not start before this time (RFC 3339, or a duration such as 10m)")
	retries := fs.Int("retries", -1, "retry a failed build up to N times (default: the mesh's setting)")
	nixStore := fs.String("nix-store", "", "the local store holding the .drv files, e.g. local?root=DIR (default: the system store)")
	mk := clientFlags(fs)
	drvs, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(drvs) == 0 {
		return usageErr("submit takes one or more .drv paths")
	}
	req := api.SubmitRequest{Priority: *priority, Closure: *closure, IgnoreIfBuilt: *ignore, Retries: *retries}
	if len(tags) > 0 {
		req.Tags = map[string]string{}
		for _, t := range tags {
			k, v, ok := strings.Cut(t, "=")
			if !ok || k == "" {
				return usageErr("--tag %q: want k=v", t)
			}
			req.Tags[k] = v
		}
	}
	if *deferUntil != "" {
		if d, err := time.ParseDuration(*deferUntil); err == nil {
			req.DeferUntil = time.Now().Add(d).UTC()
		} else if t, err := time.Parse(time.RFC3339, *deferUntil); err == nil {
			req.DeferUntil = t.UTC()
		} else {
			return usageErr("--defer-until %q: want RFC 3339 time or a duration", *deferUntil)
		}
	}
	root, err := storeRoot(*nixStore)
	if err != nil {
		return err
	}
	c := mk()
	ctx := context.Background()
	up := &uploader{c: c, root: root}
	for _, d := range drvs {
		p, err := filepath.Abs(d)
		if err != nil {
			return usageErr("%s: %v", d, err)
		}
		if _, err := store.ParseStorePath("", p); err != nil || !strings.HasSuffix(p, ".drv") {
			return usageErr("%s is not a .drv in a store dir", d)
		}
		req.Derivations = append(req.Derivations, p)
	}
	if err := up.uploadClosure(ctx, req.Derivations); err != nil {
		return err
	}
	var res api.SubmitResponse
	err = withRetry(ctx, 30*time.Second, func() error {
		return c.do(ctx, "POST", "/api/v1/builds", req, &res)
	})
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(res)
	}
	for _, b := range res.Builds {
		fmt.Println(b.ID)
	}
	return nil
}

// storeRoot is where the files of the store --nix-store names are: the
// CLI reads .drv files and sources directly, so only local stores do.
func storeRoot(uri string) (string, error) {
	root, ok, err := store.LocalStoreRoot(uri)
	if err != nil {
		return "", usageErr("--nix-store: %v", err)
	}
	if !ok {
		return "", usageErr("--nix-store %q: only the system store, local?root=DIR or a root DIR can be read", uri)
	}
	return root, nil
}

// uploader sends the .drv files and sources the mesh lacks, as nars.
type uploader struct {
	c    *client
	root string
}

// uploadClosure finds the closure of drvs, asks which paths the mesh
// lacks, and uploads them, inputs first, in as few import requests as
// the batch limits allow, with progress on stderr.
func (u *uploader) uploadClosure(ctx context.Context, drvs []string) error {
	load := func(p string) ([]byte, error) { return os.ReadFile(u.root + p) }
	var order []string
	seen := map[string]bool{}
	add := func(p string) {
		if !seen[p] {
			seen[p] = true
			order = append(order, p)
		}
	}
	var srcs []string
	for _, d := range drvs {
		ds, ss, err := store.DrvClosure(d, load)
		if err != nil {
			return fmt.Errorf("read the closure of %s: %w", d, err)
		}
		srcs = append(srcs, ss...)
		for _, x := range ds {
			add(x)
		}
	}
	sort.Strings(srcs)
	// Sources come first: .drv files refer to them.
	all := []string{}
	for _, s := range srcs {
		if !seen[s] {
			seen[s] = true
			all = append(all, s)
		}
	}
	all = append(all, order...)
	var missing api.MissingResponse
	err := withRetry(ctx, 30*time.Second, func() error {
		return u.c.do(ctx, "POST", "/api/v1/paths/missing", api.MissingRequest{Paths: all}, &missing)
	})
	if err != nil {
		return err
	}
	need := map[string]bool{}
	for _, p := range missing.Missing {
		need[p] = true
	}
	var todo []string
	for _, p := range all {
		if need[p] {
			todo = append(todo, p)
		}
	}
	if len(todo) == 0 {
		return nil
	}
	batch := make([]importPath, 0, len(todo))
	for _, p := range todo {
		refs, size, err := u.references(p, all)
		if err != nil {
			return err
		}
		batch = append(batch, importPath{path: p, refs: refs, size: size})
	}
	batch = refsFirst(batch)
	prog := &progress{total: len(todo), start: time.Now()}
	for len(batch) > 0 {
		n := batchLen(batch)
		err := withRetry(ctx, 30*time.Second, func() error {
			sent, bytes := prog.mark()
			err := u.importBatch(ctx, batch[:n], prog)
			if err != nil {
				prog.rewind(sent, bytes)
			}
			return err
		})
		if err != nil {
			return err
		}
		batch = batch[n:]
	}
	prog.done()
	return nil
}

// refsFirst orders paths so that each comes after those of its references
// that are among them, keeping the given order where it already does:
// the node takes a path only if it has its references or they came
// earlier in the stream.
func refsFirst(paths []importPath) []importPath {
	index := make(map[string]int, len(paths))
	for i, p := range paths {
		index[p.path] = i
	}
	done := make([]bool, len(paths))
	out := make([]importPath, 0, len(paths))
	var visit func(i int)
	visit = func(i int) {
		if done[i] {
			return
		}
		done[i] = true // content-addressed paths cannot form a cycle
		for _, r := range paths[i].refs {
			if j, ok := index[r]; ok {
				visit(j)
			}
		}
		out = append(out, paths[i])
	}
	for i := range paths {
		visit(i)
	}
	return out
}

// Limits of one import request; a closure larger than either is sent in
// several, each only referring to paths sent before it.
const (
	importBatchBytes = 64 << 20
	importBatchPaths = 2000
)

// importPath is a path to upload with its references and (estimated) NAR
// size.
type importPath struct {
	path string
	refs []string
	size int64
}

// batchLen is how many of paths go in the next request: at least one, and
// no more than the limits allow.
func batchLen(paths []importPath) int {
	var bytes int64
	for i, p := range paths {
		bytes += p.size
		if i > 0 && (i == importBatchPaths || bytes > importBatchBytes) {
			return i
		}
	}
	return len(paths)
}

// progress reports uploads on stderr once they take more than a second.
type progress struct {
	mu      sync.Mutex
	total   int
	sent    int
	bytes   int64
	start   time.Time
	printed time.Time
}

func (p *progress) add(bytes int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sent++
	p.bytes += bytes
	if now := time.Now(); now.Sub(p.start) > time.Second && now.Sub(p.printed) > time.Second {
		p.printed = now
		p.print()
	}
}

// mark returns the counts, for rewind after a failed request.
func (p *progress) mark() (int, int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.sent, p.bytes
}

func (p *progress) rewind(sent int, bytes int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sent, p.bytes = sent, bytes
}

// done prints the final count if anything was printed or it took long.
func (p *progress) done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if time.Since(p.start) > time.Second {
		p.print()
	}
}

func (p *progress) print() {
	fmt.Fprintf(os.Stderr, "uploaded %d/%d paths (%.1f MB)\n", p.sent, p.total, float64(p.bytes)/1e6)
}

// importBatch streams paths to POST /api/v1/nars/import as one
// nix-store --export stream, reading each path's files as it goes. The
// node checks every path as it would a single upload and records all of
// them at once, or none.
func (u *uploader) importBatch(ctx context.Context, paths []importPath, prog *progress) error {
	pr, pw := io.Pipe()
	werr := make(chan error, 1)
	go func() {
		ew := store.NewExportWriter(pw)
		err := func() error {
			for _, p := range paths {
				before := ew.Written()
				if err := ew.WritePath(store.ExportInfo{Path: p.path, References: p.refs}, u.root+p.path); err != nil {
					return fmt.Errorf("upload %s: %w", p.path, err)
				}
				prog.add(ew.Written() - before)
			}
			return ew.Close()
		}()
		pw.CloseWithError(err)
		werr <- err
	}()
	var res api.ImportResponse
	err := u.c.do(ctx, "POST", "/api/v1/nars/import", pr, &res)
	pr.Close()
	if werr := <-werr; werr != nil && !errors.Is(werr, io.ErrClosedPipe) {
		return werr
	}
	if err != nil {
		return fmt.Errorf("upload %d paths from %s: %w", len(paths), paths[0].path, err)
	}
	if len(res.Imported) != len(paths) {
		return fmt.Errorf("%w: the node recorded %d of %d uploaded paths", errFailed, len(res.Imported), len(paths))
	}
	return nil
}

// references of a .drv are its input .drvs and sources; a source's are
// found as Nix finds them: by scanning its NAR for the hash parts of the
// other paths of the closure.
func (u *uploader) references(p string, closure []string) (refs []string, narSize int64, err error) {
	if strings.HasSuffix(p, ".drv") {
		b, err := os.ReadFile(u.root + p)
		if err != nil {
			return nil, 0, err
		}
		d, err := store.ParseDerivation(b)
		if err != nil {
			return nil, 0, fmt.Errorf("%s: %w", p, err)
		}
		refs := append(d.InputDrvPaths(), d.InputSrcs...)
		sort.Strings(refs)
		// The NAR of a single file: its contents and 120 bytes of tokens.
		return refs, int64(len(b)) + 128, nil
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(store.DumpPath(pw, u.root+p)) }()
	data, err := io.ReadAll(pr)
	if err != nil {
		return nil, 0, fmt.Errorf("read %s: %w", p, err)
	}
	for _, q := range closure {
		if strings.Contains(string(data), store.HashPart(q)) {
			refs = append(refs, q)
		}
	}
	sort.Strings(refs)
	return refs, int64(len(data)), nil
}
