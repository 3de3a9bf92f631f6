package narcache

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/drvmesh/drvmesh/internal/testutil"
	"github.com/drvmesh/drvmesh/store"
)

// TestHandler_NixSubstitutes has the real Nix client substitute a store
// path from the handler into an empty chroot store, and refuse it when the
// cache's key is not trusted.
func TestHandler_NixSubstitutes(t *testing.T) {
	testutil.RequireNix(t)
	base := t.TempDir()
	src := filepath.Join(base, "src")
	tree := filepath.Join(base, "payload")
	if err := os.MkdirAll(filepath.Join(tree, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tree, "bin", "hello"), []byte("#!/bin/sh\necho hello\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tree, "data"), bytes.Repeat([]byte("nix "), 10000), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := nixCmd(t, src, "", "nix-store", "--store", "local?root="+src, "--add", tree)
	if err != nil {
		t.Fatalf("nix-store --add: %v\n%s", err, out)
	}
	storePath := strings.TrimSpace(string(out))
	var nar bytes.Buffer
	if err := store.DumpPath(&nar, filepath.Join(src, storePath)); err != nil {
		t.Fatal(err)
	}

	sk, err := store.GenerateKey("drvmesh-test-1")
	if err != nil {
		t.Fatal(err)
	}
	d := newTestDisk(t, DiskConfig{Compressions: []string{CompressionZstd, CompressionXz}})
	res, err := d.Ingest(context.Background(), &nar, Expect{})
	if err != nil {
		t.Fatal(err)
	}
	idx := NewMemIndex()
	idx.Put(Entry{Info: &store.NarInfo{StorePath: storePath, NarHash: res.NarHash, NarSize: res.NarSize},
		Files: res.Files, Version: 1})
	h, err := NewHandler(HandlerConfig{Disk: d, Index: idx, Key: &sk, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	srv := newServer(t, h)

	t.Run("trusted key", func(t *testing.T) {
		dst := filepath.Join(base, "dst")
		conf := "substituters = " + srv.URL + "\ntrusted-public-keys = " + sk.Public().String() + "\nrequire-sigs = true\n"
		out, err := nixCmd(t, dst, conf, "nix-store", "--store", "local?root="+dst, "--realise", storePath)
		if err != nil {
			t.Fatalf("nix-store --realise: %v\n%s", err, out)
		}
		for _, rel := range []string{"bin/hello", "data"} {
			want, _ := os.ReadFile(filepath.Join(tree, rel))
			got, err := os.ReadFile(filepath.Join(dst, storePath, rel))
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("%s: substituted bytes differ (%v)", rel, err)
			}
		}
		if st, err := os.Stat(filepath.Join(dst, storePath, "bin/hello")); err != nil || st.Mode()&0o100 == 0 {
			t.Fatal("executable bit lost")
		}
	})
	t.Run("untrusted key", func(t *testing.T) {
		other, _ := store.GenerateKey("drvmesh-test-1")
		dst := filepath.Join(base, "dst-wrong")
		conf := "substituters = " + srv.URL + "\ntrusted-public-keys = " + other.Public().String() + "\nrequire-sigs = true\n"
		out, err := nixCmd(t, dst, conf, "nix-store", "--store", "local?root="+dst, "--realise", storePath)
		if err == nil {
			t.Fatalf("nix accepted a nar signed by an untrusted key\n%s", out)
		}
		if _, err := os.Stat(filepath.Join(dst, storePath)); !os.IsNotExist(err) {
			t.Fatal("path was substituted anyway")
		}
		if !strings.Contains(string(out), "not signed by any of the keys") {
			t.Fatalf("nix failed for another reason:\n%s", out)
		}
	})
}

// nixCmd runs a Nix command against the chroot store under dir.
func nixCmd(t *testing.T, dir, conf string, name string, args ...string) ([]byte, error) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(name, args...)
	cmd.Env = testutil.NixEnv(dir, conf)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return append(out, stderr.Bytes()...), err
	}
	return out, nil
}
