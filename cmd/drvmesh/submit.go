package main

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/drvmesh/drvmesh/store"
)

func init() {
	register("submit", "upload what the mesh lacks of the derivations' closures and create builds", runSubmit)
}

type submitRequest struct {
	Derivations   []string          `json:"derivations"`
	Priority      int               `json:"priority"`
	Tags          map[string]string `json:"tags,omitempty"`
	Closure       bool              `json:"closure"`
	IgnoreIfBuilt bool              `json:"ignore_if_built"`
	DeferUntil    time.Time         `json:"defer_until,omitzero"`
	Retries       int               `json:"retries"`
}

type submitResponse struct {
	Builds []struct {
		ID         string `json:"id"`
		Derivation string `json:"derivation"`
	} `json:"builds"`
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
	req := submitRequest{Priority: *priority, Closure: *closure, IgnoreIfBuilt: *ignore, Retries: *retries}
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
	var res submitResponse
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

// storeRoot is the directory the store paths of uri physically live under:
// "" for the system store, DIR for local?root=DIR or a bare /DIR.
func storeRoot(uri string) (string, error) {
	switch {
	case uri == "" || uri == "auto" || uri == "daemon" || uri == "local":
		return "", nil
	case strings.HasPrefix(uri, "/"):
		return filepath.Clean(uri), nil
	case strings.HasPrefix(uri, "local?"):
		v, err := url.ParseQuery(strings.TrimPrefix(uri, "local?"))
		if err != nil {
			return "", usageErr("--nix-store %q: %v", uri, err)
		}
		return v.Get("root"), nil
	}
	return "", usageErr("--nix-store %q: only the system store, local?root=DIR or a root DIR can be read", uri)
}

// uploader sends the .drv files and sources the mesh lacks, as nars.
type uploader struct {
	c    *client
	root string
}

// uploadClosure finds the closure of drvs, asks which paths the mesh
// lacks, and uploads them, inputs first, with progress on stderr.
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
	var missing struct {
		Missing []string `json:"missing"`
	}
	err := withRetry(ctx, 30*time.Second, func() error {
		return u.c.do(ctx, "POST", "/api/v1/paths/missing", map[string]any{"paths": all}, &missing)
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
	start := time.Now()
	var sent int64
	for i, p := range todo {
		refs, err := u.references(p, all)
		if err != nil {
			return err
		}
		n, err := u.upload(ctx, p, refs)
		if err != nil {
			return fmt.Errorf("upload %s: %w", p, err)
		}
		sent += n
		if time.Since(start) > time.Second || i == len(todo)-1 && time.Since(start) > time.Second {
			fmt.Fprintf(os.Stderr, "uploaded %d/%d paths (%.1f MB)\n", i+1, len(todo), float64(sent)/1e6)
		}
	}
	return nil
}

// references of a .drv are its input .drvs and sources; a source's are
// found as Nix finds them: by scanning its NAR for the hash parts of the
// other paths of the closure.
func (u *uploader) references(p string, closure []string) ([]string, error) {
	if strings.HasSuffix(p, ".drv") {
		b, err := os.ReadFile(u.root + p)
		if err != nil {
			return nil, err
		}
		d, err := store.ParseDerivation(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		refs := append(d.InputDrvPaths(), d.InputSrcs...)
		sort.Strings(refs)
		return refs, nil
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(store.DumpPath(pw, u.root+p)) }()
	data, err := io.ReadAll(pr)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", p, err)
	}
	var refs []string
	for _, q := range closure {
		if strings.Contains(string(data), store.HashPart(q)) {
			refs = append(refs, q)
		}
	}
	sort.Strings(refs)
	return refs, nil
}

// upload streams one path's NAR to PUT /api/v1/nars. The node checks
// that the path is content-addressed by what it receives.
func (u *uploader) upload(ctx context.Context, p string, refs []string) (int64, error) {
	h, size, err := store.NarHashPath(u.root + p)
	if err != nil {
		return 0, err
	}
	q := url.Values{}
	q.Set("path", p)
	q.Set("nar_hash", h.String())
	q.Set("nar_size", strconv.FormatInt(size, 10))
	for _, r := range refs {
		q.Add("reference", r)
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(store.DumpPath(pw, u.root+p)) }()
	err = u.c.do(ctx, "PUT", "/api/v1/nars?"+q.Encode(), pr, nil)
	pr.Close()
	return size, err
}
