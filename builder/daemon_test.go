package builder

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/drvmesh/drvmesh/builder/worker"
	"github.com/drvmesh/drvmesh/internal/testutil"
	"github.com/drvmesh/drvmesh/store"
)

// daemonConfig is the nix.conf of the test daemons: /bin/sh reachable in
// the sandbox, no build users (the tests run as root or as the owner of
// the chroot stores), no substituters.
const daemonConfig = "sandbox = true\nextra-sandbox-paths = /bin /usr /lib /lib64\nbuild-users-group =\nsubstituters =\n"

// stdioDial dials nix-daemon --stdio on the chroot store at root.
func stdioDial(t testing.TB, root string) func(context.Context) (io.ReadWriteCloser, error) {
	testutil.RequireTool(t, "nix-daemon")
	return StdioDaemon("", "local?root="+root, daemonConfig)
}

// dialConn opens a connection to the chroot store at root.
func dialConn(t testing.TB, root string) *worker.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rwc, err := stdioDial(t, root)(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c, err := worker.NewConn(ctx, rwc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// storeSource is an InputSource reading another chroot store through
// its daemon, with some paths hidden.
type storeSource struct {
	mu     sync.Mutex
	c      *worker.Conn
	hidden map[string]bool
	opened []string
}

func (s *storeSource) OpenNAR(ctx context.Context, p string) (io.ReadCloser, PathInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.opened = append(s.opened, p)
	if s.hidden[p] {
		return nil, PathInfo{}, fmt.Errorf("open %s: %w", p, ErrMissingInputs)
	}
	info, ok, err := s.c.QueryPathInfo(ctx, p)
	if err != nil {
		return nil, PathInfo{}, err
	}
	if !ok {
		return nil, PathInfo{}, fmt.Errorf("open %s: %w", p, ErrMissingInputs)
	}
	var nar bytes.Buffer
	if err := s.c.NarFromPath(ctx, p, &nar); err != nil {
		return nil, PathInfo{}, err
	}
	return io.NopCloser(&nar), info, nil
}

// daemonFixture is the nix fixture plus a NixDaemon building into a
// fresh chroot store D, fed from store A.
type daemonFixture struct {
	*fixture
	storeD string
	src    *storeSource
	pool   *DaemonPool
	nd     *NixDaemon
}

func newDaemonFixture(t testing.TB) *daemonFixture {
	t.Helper()
	f := newFixture(t)
	d := &daemonFixture{fixture: f, storeD: filepath.Join(f.dir, "d")}
	d.src = &storeSource{c: dialConn(t, f.storeA), hidden: map[string]bool{f.drvs["gone"]: true}}
	d.pool = NewDaemonPool(stdioDial(t, d.storeD), 2)
	nd, err := NewNixDaemon(NixDaemonConfig{Pool: d.pool, Inputs: d.src})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := nd.Close(); err != nil {
			t.Error(err)
		}
	})
	d.nd = nd
	return d
}

func TestNixDaemon_Build(t *testing.T) {
	f := newDaemonFixture(t)
	ctx := context.Background()

	t.Run("copies drv inputs then builds", func(t *testing.T) {
		var log bytes.Buffer
		res, err := f.nd.Build(ctx, Request{DrvPath: f.drvs["top"]}, &log)
		if err != nil {
			t.Fatalf("build: %v\n%s", err, log.String())
		}
		out := res.Outputs["out"]
		if len(res.Outputs) != 1 || out != outputPath(t, f.fixture, "top", "out") || res.Substituted {
			t.Fatalf("result = %+v", res)
		}
		b, err := os.ReadFile(filepath.Join(f.storeD, out))
		if err != nil || string(b) != "top dep-content from-src\n" {
			t.Fatalf("output = %q, %v", b, err)
		}
		if !strings.Contains(log.String(), "started\n") {
			t.Errorf("log lacks the builder's output:\n%s", log.String())
		}
		// dep's output was copied, not built.
		if strings.Contains(log.String(), f.drvs["dep"]) {
			t.Errorf("dep was built:\n%s", log.String())
		}
		if _, err := os.Stat(filepath.Join(f.storeD, outputPath(t, f.fixture, "dep", "out"))); err != nil {
			t.Error(err)
		}
	})

	t.Run("already present is reported substituted", func(t *testing.T) {
		res, err := f.nd.Build(ctx, Request{DrvPath: f.drvs["top"]}, nil)
		if err != nil || !res.Substituted || res.Outputs["out"] == "" {
			t.Fatalf("result = %+v, %v", res, err)
		}
	})

	t.Run("multiple outputs", func(t *testing.T) {
		res, err := f.nd.Build(ctx, Request{DrvPath: f.drvs["multi"], Outputs: []string{"dev"}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Outputs) != 1 || !strings.HasSuffix(res.Outputs["dev"], "-multi-dev") {
			t.Fatalf("outputs = %v", res.Outputs)
		}
		if _, err := os.Stat(filepath.Join(f.storeD, res.Outputs["dev"], "f")); err != nil {
			t.Error(err)
		}
	})

	t.Run("unknown output", func(t *testing.T) {
		_, err := f.nd.Build(ctx, Request{DrvPath: f.drvs["multi"], Outputs: []string{"lib"}}, nil)
		if !errors.Is(err, ErrBadRequest) {
			t.Fatalf("err = %v, want ErrBadRequest", err)
		}
	})

	t.Run("fixed output", func(t *testing.T) {
		res, err := f.nd.Build(ctx, Request{DrvPath: f.drvs["fixed"]}, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(f.storeD, res.Outputs["out"]))
		if err != nil || string(b) != "hello" {
			t.Fatalf("content %q, %v", b, err)
		}
	})

	t.Run("failing derivation", func(t *testing.T) {
		var log bytes.Buffer
		_, err := f.nd.Build(ctx, Request{DrvPath: f.drvs["fail"]}, &log)
		if !errors.Is(err, ErrBuildFailed) {
			t.Fatalf("err = %v, want ErrBuildFailed\n%s", err, log.String())
		}
		if !strings.Contains(log.String(), "boom") {
			t.Errorf("log lacks boom:\n%s", log.String())
		}
	})

	t.Run("timeout is a build failure", func(t *testing.T) {
		start := time.Now()
		var log bytes.Buffer
		_, err := f.nd.Build(ctx, Request{DrvPath: f.drvs["sleepy"], Timeout: time.Second}, &log)
		if !errors.Is(err, ErrBuildFailed) || !strings.Contains(err.Error(), "TimedOut") {
			t.Fatalf("err = %v, want ErrBuildFailed (TimedOut)\n%s", err, log.String())
		}
		if d := time.Since(start); d > 20*time.Second {
			t.Errorf("took %v", d)
		}
	})

	t.Run("input output missing from source", func(t *testing.T) {
		res, err := f.nd.Build(ctx, Request{DrvPath: f.drvs["orphan"]}, nil)
		lost := outputPath(t, f.fixture, "lost", "out")
		if !errors.Is(err, ErrMissingInputs) || !slices.Equal(res.MissingInputs, []string{lost}) {
			t.Fatalf("err = %v, missing = %v, want [%s]", err, res.MissingInputs, lost)
		}
	})

	t.Run("input drv missing from source", func(t *testing.T) {
		res, err := f.nd.Build(ctx, Request{DrvPath: f.drvs["stray"]}, nil)
		if !errors.Is(err, ErrMissingInputs) || !slices.Equal(res.MissingInputs, []string{f.drvs["gone"]}) {
			t.Fatalf("err = %v, missing = %v, want [%s]", err, res.MissingInputs, f.drvs["gone"])
		}
	})

	t.Run("bad drv path", func(t *testing.T) {
		_, err := f.nd.Build(ctx, Request{DrvPath: "/tmp/x.drv"}, nil)
		if !errors.Is(err, ErrBadRequest) {
			t.Fatalf("err = %v, want ErrBadRequest", err)
		}
	})
}

func TestNixDaemon_AddToStoreNar(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	a := dialConn(t, f.storeA)
	d := dialConn(t, filepath.Join(f.dir, "d"))
	dep := outputPath(t, f, "dep", "out")
	want, ok, err := a.QueryPathInfo(ctx, dep)
	if err != nil || !ok {
		t.Fatalf("query A: %v %v", ok, err)
	}
	// The NAR is dumped from A's files, not asked of A's daemon.
	var nar bytes.Buffer
	if err := store.DumpPath(&nar, filepath.Join(f.storeA, dep)); err != nil {
		t.Fatal(err)
	}
	if valid, err := d.IsValidPath(ctx, dep); err != nil || valid {
		t.Fatalf("before: valid %v, %v", valid, err)
	}
	if err := d.AddToStoreNar(ctx, want, &nar, false, true); err != nil {
		t.Fatal(err)
	}
	if valid, err := d.IsValidPath(ctx, dep); err != nil || !valid {
		t.Fatalf("after: valid %v, %v", valid, err)
	}
	got, ok, err := d.QueryPathInfo(ctx, dep)
	if err != nil || !ok {
		t.Fatalf("query D: %v %v", ok, err)
	}
	if !got.NarHash.Equal(want.NarHash) || got.NarSize != want.NarSize || got.Deriver != want.Deriver ||
		!slices.Equal(got.References, want.References) {
		t.Errorf("D has %+v, A has %+v", got, want)
	}
}

func TestNixDaemon_OutputNAR(t *testing.T) {
	f := newDaemonFixture(t)
	ctx := context.Background()
	res, err := f.nd.Build(ctx, Request{DrvPath: f.drvs["multi"]}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for name, p := range res.Outputs {
		t.Run(name, func(t *testing.T) {
			var nar bytes.Buffer
			if err := f.nd.OutputNAR(ctx, p, &nar); err != nil {
				t.Fatal(err)
			}
			// nix-store --dump ignores --store: dump the physical path.
			want, err := exec.Command("nix-store", "--dump", filepath.Join(f.storeD, p)).Output()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(nar.Bytes(), want) {
				t.Errorf("nar of %d bytes differs from nix-store --dump's %d", nar.Len(), len(want))
			}
		})
	}
	t.Run("more at once than the pool holds", func(t *testing.T) {
		var wg sync.WaitGroup
		errs := make(chan error, 6)
		for range 6 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var nar bytes.Buffer
				errs <- f.nd.OutputNAR(ctx, res.Outputs["dev"], &nar)
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Error(err)
			}
		}
		if n := f.pool.dialCount(); n > 2 {
			t.Errorf("pool of 2 dialed %d connections", n)
		}
	})
	t.Run("not a store path", func(t *testing.T) {
		if err := f.nd.OutputNAR(ctx, "/etc/passwd", io.Discard); !errors.Is(err, ErrBadRequest) {
			t.Errorf("err = %v, want ErrBadRequest", err)
		}
	})
	t.Run("invalid path", func(t *testing.T) {
		err := f.nd.OutputNAR(ctx, outputPath(t, f.fixture, "lost", "out"), io.Discard)
		if !errors.Is(err, ErrBackend) {
			t.Errorf("err = %v, want ErrBackend", err)
		}
	})
}

func TestNixDaemon_BuildCancel(t *testing.T) {
	f := newDaemonFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log := newSyncBuffer()
	done := make(chan error, 1)
	go func() {
		_, err := f.nd.Build(ctx, Request{DrvPath: f.drvs["sleepy"]}, log)
		done <- err
	}()
	marker := "sleep " + f.nonce
	testutil.Eventually(t, 20*time.Second, "log shows started while the build runs", func() bool {
		return strings.Contains(log.String(), "started")
	})
	if !processRunning(marker) {
		t.Fatalf("no %q process while the build runs", marker)
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, ErrCanceled) {
			t.Fatalf("err = %v, want ErrCanceled\n%s", err, log.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Build did not return after cancel")
	}
	testutil.Eventually(t, 5*time.Second, "builder processes gone", func() bool {
		return !processRunning(marker)
	})
	// The pool replaced the connection.
	dials := f.pool.dialCount()
	res, err := f.nd.Build(context.Background(), Request{DrvPath: f.drvs["fixed"]}, nil)
	if err != nil || res.Outputs["out"] == "" {
		t.Fatalf("build after cancel: %+v, %v", res, err)
	}
	if f.pool.dialCount() != dials+1 {
		t.Errorf("dials %d, want %d", f.pool.dialCount(), dials+1)
	}
}

func TestDaemonPool(t *testing.T) {
	root := filepath.Join(t.TempDir(), "root")
	pool := NewDaemonPool(stdioDial(t, root), 2)
	defer pool.Close()
	ctx := context.Background()

	c1, err := pool.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c2, err := pool.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("waits while size connections are in use", func(t *testing.T) {
		wctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		defer cancel()
		if _, err := pool.Get(wctx); !errors.Is(err, ErrCanceled) {
			t.Fatalf("err = %v, want ErrCanceled", err)
		}
	})
	t.Run("reuses a healthy connection", func(t *testing.T) {
		pool.Put(c1)
		c, err := pool.Get(ctx)
		if err != nil || c != c1 || pool.dialCount() != 2 {
			t.Fatalf("got %p (want %p), %v, dials %d", c, c1, err, pool.dialCount())
		}
		c1 = c
	})
	t.Run("replaces a broken connection", func(t *testing.T) {
		_ = c2.Close()
		pool.Put(c2)
		c, err := pool.Get(ctx)
		if err != nil || c == c2 || pool.dialCount() != 3 {
			t.Fatalf("got %p, %v, dials %d", c, err, pool.dialCount())
		}
		if _, err := c.IsValidPath(ctx, "/nix/store/00000000000000000000000000000000-x"); err != nil {
			t.Fatal(err)
		}
		c2 = c
	})
	t.Run("close closes everything", func(t *testing.T) {
		pool.Put(c1)
		if err := pool.Close(); err != nil {
			t.Fatal(err)
		}
		if !c1.Broken() || !c2.Broken() {
			t.Errorf("broken: idle %v, in use %v", c1.Broken(), c2.Broken())
		}
		pool.Put(c2)
		if _, err := pool.Get(ctx); !errors.Is(err, ErrBackend) {
			t.Errorf("get after close: %v, want ErrBackend", err)
		}
	})
}
