package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/drvmesh/drvmesh/internal/testutil"
	"github.com/drvmesh/drvmesh/store"
)

func makeNarTree(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tree")
	if err := os.MkdirAll(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "sub", "run"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "a b"), []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("sub/run", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestNarCommands(t *testing.T) {
	tree := makeNarTree(t)
	var nar bytes.Buffer
	if err := narDump(&nar, []string{tree}); err != nil {
		t.Fatal(err)
	}

	t.Run("dump", func(t *testing.T) {
		var want bytes.Buffer
		if err := store.DumpPath(&want, tree); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(nar.Bytes(), want.Bytes()) {
			t.Error("nar dump differs from store.DumpPath")
		}
	})
	t.Run("hash path and stdin agree", func(t *testing.T) {
		var a, b bytes.Buffer
		if err := narHash(&a, nil, []string{tree}); err != nil {
			t.Fatal(err)
		}
		if err := narHash(&b, bytes.NewReader(nar.Bytes()), []string{"-"}); err != nil {
			t.Fatal(err)
		}
		if a.String() != b.String() || len(strings.TrimSpace(a.String())) != 52 {
			t.Errorf("hash of path %q, of stdin %q", a.String(), b.String())
		}
	})
	t.Run("restore", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "out")
		if err := narRestore(bytes.NewReader(nar.Bytes()), []string{out}); err != nil {
			t.Fatal(err)
		}
		var again bytes.Buffer
		if err := narDump(&again, []string{out}); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(again.Bytes(), nar.Bytes()) {
			t.Error("restored tree dumps differently")
		}
		if err := narRestore(bytes.NewReader(nar.Bytes()), []string{out}); exitCode(err) == 0 {
			t.Error("restore into an existing directory succeeded")
		}
	})
	t.Run("ls", func(t *testing.T) {
		f := filepath.Join(t.TempDir(), "x.nar")
		if err := os.WriteFile(f, nar.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		if err := narLs(&out, nil, []string{f}); err != nil {
			t.Fatal(err)
		}
		want := "-r--r--r--                    6 ./a b\n" +
			"lrwxrwxrwx                    0 ./link -> sub/run\n" +
			"dr-xr-xr-x                    0 ./sub\n" +
			"-r-xr-xr-x                   10 ./sub/run\n"
		if out.String() != want {
			t.Errorf("got\n%swant\n%s", out.String(), want)
		}
		out.Reset()
		if err := narLs(&out, nil, []string{"--json", f}); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(out.String(), `{"version":1,"root":{"type":"directory","entries":{"a b":{"type":"regular","size":6,"narOffset":`) {
			t.Errorf("json listing = %s", out.String())
		}
	})
	t.Run("bad input exits 2", func(t *testing.T) {
		bad := append(bytes.Clone(nar.Bytes()), 0)
		cases := map[string]error{
			"hash trailing":   narHash(&bytes.Buffer{}, bytes.NewReader(bad), []string{"-"}),
			"hash truncated":  narHash(&bytes.Buffer{}, bytes.NewReader(nar.Bytes()[:50]), []string{"-"}),
			"restore bad":     narRestore(bytes.NewReader(bad[:100]), []string{filepath.Join(t.TempDir(), "o")}),
			"ls bad":          narLs(&bytes.Buffer{}, bytes.NewReader(bad), []string{"-"}),
			"no args":         narDump(&bytes.Buffer{}, nil),
			"missing path":    narHash(&bytes.Buffer{}, nil, []string{filepath.Join(t.TempDir(), "missing")}),
			"too many args":   narHash(&bytes.Buffer{}, nil, []string{"a", "b"}),
			"unknown ls flag": narLs(&bytes.Buffer{}, nil, []string{"--nope", "x"}),
		}
		for name, err := range cases {
			if code := exitCode(err); code != 2 {
				t.Errorf("%s: exit %d (%v), want 2", name, code, err)
			}
		}
		if err := cases["hash trailing"]; !errors.Is(err, store.ErrBadNar) {
			t.Errorf("hash of trailing data = %v, want ErrBadNar", err)
		}
	})
}

func TestNarHash_MatchesNixHash(t *testing.T) {
	testutil.RequireNix(t)
	tree := makeNarTree(t)
	want, err := exec.Command("nix-hash", "--type", "sha256", "--base32", tree).Output()
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	if err := narHash(&got, nil, []string{tree}); err != nil {
		t.Fatal(err)
	}
	if got.String() != string(want) {
		t.Errorf("nar hash = %q, nix-hash = %q", got.String(), want)
	}
}
