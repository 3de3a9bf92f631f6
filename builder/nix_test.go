package builder

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/drvmesh/drvmesh/internal/testutil"
	"github.com/drvmesh/drvmesh/store"
)

func TestNix_Build(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()

	t.Run("substitutes drv and inputs then builds", func(t *testing.T) {
		var log bytes.Buffer
		res, err := f.builder.Build(ctx, f.request("top"), &log)
		if err != nil {
			t.Fatalf("build: %v\n%s", err, log.String())
		}
		out := res.Outputs["out"]
		if len(res.Outputs) != 1 || !strings.HasSuffix(out, "-top") {
			t.Fatalf("outputs = %v", res.Outputs)
		}
		if res.Substituted {
			t.Error("Substituted = true for a fresh build")
		}
		b, err := os.ReadFile(filepath.Join(f.storeB, out))
		if err != nil {
			t.Fatal(err)
		}
		if got := string(b); got != "top dep-content from-src\n" {
			t.Errorf("output content = %q", got)
		}
		if !strings.Contains(log.String(), "started") {
			t.Errorf("log lacks the builder's output:\n%s", log.String())
		}
		// The dependency came from the cache, not from a local build.
		if strings.Contains(log.String(), "building '"+f.drvs["dep"]+"'") {
			t.Errorf("dep was built locally:\n%s", log.String())
		}
	})

	t.Run("already present is reported substituted", func(t *testing.T) {
		res, err := f.builder.Build(ctx, f.request("top"), nil)
		if err != nil {
			t.Fatal(err)
		}
		if !res.Substituted || res.Outputs["out"] == "" {
			t.Errorf("result = %+v", res)
		}
	})

	t.Run("multiple outputs", func(t *testing.T) {
		res, err := f.builder.Build(ctx, f.request("multi", "dev"), nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Outputs) != 1 || !strings.HasSuffix(res.Outputs["dev"], "-multi-dev") {
			t.Fatalf("outputs = %v", res.Outputs)
		}
		res, err = f.builder.Build(ctx, f.request("multi"), nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Outputs) != 2 || !strings.HasSuffix(res.Outputs["out"], "-multi") {
			t.Fatalf("outputs = %v", res.Outputs)
		}
		if _, err := os.Stat(filepath.Join(f.storeB, res.Outputs["dev"], "f")); err != nil {
			t.Error(err)
		}
	})

	t.Run("unknown output", func(t *testing.T) {
		_, err := f.builder.Build(ctx, f.request("multi", "lib"), nil)
		if !errors.Is(err, ErrBadRequest) {
			t.Fatalf("err = %v, want ErrBadRequest", err)
		}
	})

	t.Run("fixed output", func(t *testing.T) {
		res, err := f.builder.Build(ctx, f.request("fixed"), nil)
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(f.storeB, res.Outputs["out"]))
		if err != nil || string(b) != "hello" {
			t.Fatalf("content %q, %v", b, err)
		}
	})

	t.Run("failing derivation", func(t *testing.T) {
		var log bytes.Buffer
		_, err := f.builder.Build(ctx, f.request("fail"), &log)
		if !errors.Is(err, ErrBuildFailed) {
			t.Fatalf("err = %v, want ErrBuildFailed\n%s", err, log.String())
		}
		if !strings.Contains(log.String(), "boom") {
			t.Errorf("log lacks boom:\n%s", log.String())
		}
	})

	t.Run("input output missing from cache", func(t *testing.T) {
		var log bytes.Buffer
		res, err := f.builder.Build(ctx, f.request("orphan"), &log)
		if !errors.Is(err, ErrMissingInputs) {
			t.Fatalf("err = %v, want ErrMissingInputs\n%s", err, log.String())
		}
		lost := outputPath(t, f, "lost", "out")
		if !slices.Equal(res.MissingInputs, []string{lost}) {
			t.Errorf("missing = %v, want [%s]", res.MissingInputs, lost)
		}
		if strings.Contains(log.String(), "building '"+f.drvs["lost"]+"'") {
			t.Error("the missing input was built locally")
		}
	})

	t.Run("input drv missing from cache", func(t *testing.T) {
		var log bytes.Buffer
		res, err := f.builder.Build(ctx, f.request("stray"), &log)
		if !errors.Is(err, ErrMissingInputs) {
			t.Fatalf("err = %v, want ErrMissingInputs\n%s", err, log.String())
		}
		if !slices.Equal(res.MissingInputs, []string{f.drvs["gone"]}) {
			t.Errorf("missing = %v, want [%s]", res.MissingInputs, f.drvs["gone"])
		}
	})

	t.Run("substituter down", func(t *testing.T) {
		req := f.request("multi")
		req.Substituter = "http://127.0.0.1:1"
		res, err := f.builder.Build(ctx, req, nil)
		if !errors.Is(err, ErrBackend) || len(res.MissingInputs) > 0 {
			t.Fatalf("err = %v, missing = %v, want ErrBackend and none missing", err, res.MissingInputs)
		}
	})

	t.Run("prepared: one realise substitutes and builds", func(t *testing.T) {
		storeC := filepath.Join(f.dir, "c")
		nc, err := NewNix(NixConfig{Store: "local?root=" + storeC})
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		for _, attr := range []string{"top", "multi"} {
			req := f.request(attr)
			req.Prepared = true
			var log bytes.Buffer
			res, err := nc.Build(ctx, req, &log)
			if err != nil {
				t.Fatalf("build %s: %v\n%s", attr, err, log.String())
			}
			if res.Substituted || len(res.Outputs) == 0 {
				t.Fatalf("%s: result = %+v", attr, res)
			}
			for name, p := range res.Outputs {
				if _, err := os.Lstat(filepath.Join(storeC, p)); err != nil {
					t.Errorf("%s output %s: %v", attr, name, err)
				}
			}
			if strings.Contains(log.String(), "building '"+f.drvs["dep"]+"'") {
				t.Errorf("dep was built locally:\n%s", log.String())
			}
		}
		b, err := os.ReadFile(filepath.Join(storeC, outputPath(t, f, "top", "out")))
		if err != nil || string(b) != "top dep-content from-src\n" {
			t.Fatalf("top's output = %q, %v", b, err)
		}
	})

	t.Run("bad drv path", func(t *testing.T) {
		_, err := f.builder.Build(ctx, Request{DrvPath: "/tmp/x.drv"}, nil)
		if !errors.Is(err, ErrBadRequest) {
			t.Fatalf("err = %v, want ErrBadRequest", err)
		}
	})
}

// outputPath reads an output path from the .drv in store A.
func outputPath(t *testing.T, f *fixture, attr, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(f.storeA, f.drvs[attr]))
	if err != nil {
		t.Fatal(err)
	}
	d, err := store.ParseDerivation(b)
	if err != nil {
		t.Fatal(err)
	}
	o, ok := d.Output(name)
	if !ok {
		t.Fatalf("%s has no output %s", attr, name)
	}
	return o.Path
}

func TestNix_BuildCancel(t *testing.T) {
	f := newFixture(t)
	var pgids []int
	pgidc := make(chan int, 8)
	f.builder.started = func(pgid int) { pgidc <- pgid }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log := newSyncBuffer()
	type outcome struct {
		res Result
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := f.builder.Build(ctx, f.request("sleepy"), log)
		done <- outcome{res, err}
	}()
	marker := "sleep " + f.nonce
	testutil.Eventually(t, 20*time.Second, "log shows started while the build runs", func() bool {
		return strings.Contains(log.String(), "started")
	})
	if !processRunning(marker) {
		t.Fatalf("no %q process while the build runs", marker)
	}
	cancel()
	var o outcome
	select {
	case o = <-done:
	case <-time.After(killGrace + 10*time.Second):
		t.Fatal("Build did not return after cancel")
	}
	if !errors.Is(o.err, ErrCanceled) {
		t.Fatalf("err = %v, want ErrCanceled\n%s", o.err, log.String())
	}
	for len(pgidc) > 0 {
		pgids = append(pgids, <-pgidc)
	}
	if len(pgids) == 0 {
		t.Fatal("no process group reported")
	}
	for _, pg := range pgids {
		if err := syscall.Kill(-pg, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("process group %d still exists (kill: %v)", pg, err)
		}
	}
	testutil.Eventually(t, 5*time.Second, "builder processes gone", func() bool {
		return !processRunning(marker)
	})
}

// processRunning reports whether a process's command line contains s.
func processRunning(s string) bool {
	dirs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range dirs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		if strings.Contains(string(bytes.ReplaceAll(b, []byte{0}, []byte{' '})), s) {
			return true
		}
	}
	return false
}

func TestNix_OutputNAR(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	res, err := f.builder.Build(ctx, f.request("multi"), nil)
	if err != nil {
		t.Fatal(err)
	}
	for name, p := range res.Outputs {
		t.Run(name, func(t *testing.T) {
			var nar bytes.Buffer
			if err := f.builder.OutputNAR(ctx, p, &nar); err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(nar.Bytes())
			want := strings.TrimSpace(f.run(t, "nix-hash", "--type", "sha256", "--base32", filepath.Join(f.storeB, p)))
			if got := store.SHA256Hash(sum).Nix32(); got != want {
				t.Errorf("nar hash %s, nix-hash says %s", got, want)
			}
		})
	}
	t.Run("not a store path", func(t *testing.T) {
		if err := f.builder.OutputNAR(ctx, "/etc/passwd", &bytes.Buffer{}); !errors.Is(err, ErrBadRequest) {
			t.Errorf("err = %v, want ErrBadRequest", err)
		}
	})
}
