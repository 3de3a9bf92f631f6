package store

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const (
	nixNarDir  = "../testdata/nix-2.8/nar"
	guixNarDir = "../testdata/guix/nar"
)

// testNars returns the NAR files of the shared test data, by base name.
func testNars(t testing.TB) map[string][]byte {
	t.Helper()
	nars := map[string][]byte{}
	for _, dir := range []string{nixNarDir, guixNarDir} {
		files, err := filepath.Glob(filepath.Join(dir, "*.nar"))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			nars[filepath.Base(f)] = b
		}
	}
	if len(nars) == 0 {
		t.Fatal("no NAR test data in ../testdata")
	}
	return nars
}

// testNarHashes returns the expected NarHash and NarSize of the test NARs,
// from Nix's path-info.json and the Guix narinfo.
func testNarHashes(t testing.TB) map[string]struct {
	hash Hash
	size int64
} {
	t.Helper()
	want := map[string]struct {
		hash Hash
		size int64
	}{}
	b, err := os.ReadFile("../testdata/nix-2.8/path-info.json")
	if err != nil {
		t.Fatal(err)
	}
	var infos []struct {
		Path    string `json:"path"`
		NarHash string `json:"narHash"`
		NarSize int64  `json:"narSize"`
	}
	if err := json.Unmarshal(b, &infos); err != nil {
		t.Fatal(err)
	}
	for _, pi := range infos {
		h, err := ParseHash(pi.NarHash)
		if err != nil {
			t.Fatalf("%s: %v", pi.Path, err)
		}
		want[filepath.Base(pi.Path)+".nar"] = struct {
			hash Hash
			size int64
		}{h, pi.NarSize}
	}
	ni, err := os.ReadFile("../testdata/guix/narinfo/03-content-addressed-none.narinfo")
	if err != nil {
		t.Fatal(err)
	}
	var path, nh, ns string
	for _, line := range strings.Split(string(ni), "\n") {
		k, v, _ := strings.Cut(line, ": ")
		switch k {
		case "StorePath":
			path = v
		case "NarHash":
			nh = v
		case "NarSize":
			ns = v
		}
	}
	h, err := ParseHash(nh)
	if err != nil {
		t.Fatal(err)
	}
	var size int64
	if _, err := fmtSscan(ns, &size); err != nil {
		t.Fatal(err)
	}
	want[filepath.Base(path)+".nar"] = struct {
		hash Hash
		size int64
	}{h, size}
	return want
}

func TestNar_SharedTestdata(t *testing.T) {
	nars := testNars(t)
	want := testNarHashes(t)
	for name := range want {
		if _, ok := nars[name]; !ok {
			t.Errorf("no NAR file for %s", name)
		}
	}
	for name, nar := range nars {
		t.Run(name, func(t *testing.T) {
			h, size, err := CheckNar(bytes.NewReader(nar))
			if err != nil {
				t.Fatalf("CheckNar: %v", err)
			}
			if size != int64(len(nar)) {
				t.Errorf("CheckNar size = %d, want %d", size, len(nar))
			}
			if w, ok := want[name]; ok {
				if !h.Equal(w.hash) || size != w.size {
					t.Errorf("CheckNar = %s %d, want %s %d", h, size, w.hash, w.size)
				}
			}
			if _, err := ListNar(bytes.NewReader(nar)); err != nil {
				t.Errorf("ListNar: %v", err)
			}
			dir := filepath.Join(t.TempDir(), "out")
			if err := Restore(bytes.NewReader(nar), dir); err != nil {
				t.Fatalf("Restore: %v", err)
			}
			var dump bytes.Buffer
			if err := DumpPath(&dump, dir); err != nil {
				t.Fatalf("DumpPath: %v", err)
			}
			if !bytes.Equal(dump.Bytes(), nar) {
				t.Errorf("DumpPath of the restored tree differs from the NAR (%d vs %d bytes)", dump.Len(), len(nar))
			}
			ph, psize, err := NarHashPath(dir)
			if err != nil {
				t.Fatalf("NarHashPath: %v", err)
			}
			if !ph.Equal(h) || psize != size {
				t.Errorf("NarHashPath = %s %d, want %s %d", ph, psize, h, size)
			}
		})
	}
}

func TestDumpPath_Vectors(t *testing.T) {
	t.Run("hello file", func(t *testing.T) {
		f := filepath.Join(t.TempDir(), "f")
		if err := os.WriteFile(f, []byte("hello\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		if err := DumpPath(&b, f); err != nil {
			t.Fatal(err)
		}
		wantHex := "0d00000000000000" + "6e69782d61726368" + "6976652d31000000" +
			"0100000000000000" + "2800000000000000" +
			"0400000000000000" + "7479706500000000" +
			"0700000000000000" + "726567756c617200" +
			"0800000000000000" + "636f6e74656e7473" +
			"0600000000000000" + "68656c6c6f0a0000" +
			"0100000000000000" + "2900000000000000"
		if got := hex.EncodeToString(b.Bytes()); got != wantHex {
			t.Errorf("dump = %s, want %s", got, wantHex)
		}
		h, size, err := NarHashPath(f)
		if err != nil {
			t.Fatal(err)
		}
		if h.String() != "sha256:04zwf782yjwnh3q6hz5izfd6jyip8kgw6g6yj43fiqhbyhdd0dqw" || size != 120 {
			t.Errorf("NarHashPath = %s %d", h, size)
		}
		if h.Hex() != "1c37d01af40be2e80691de3cc3df44377a699afbb17c68f080964b2fd071fc13" {
			t.Errorf("hex = %s", h.Hex())
		}
	})
	t.Run("712-byte directory", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "d")
		mustMkdir(t, dir)
		mustWrite(t, filepath.Join(dir, "a.txt"), "hello\n", 0o644)
		if err := os.Symlink("a.txt", filepath.Join(dir, "link")); err != nil {
			t.Fatal(err)
		}
		mustWrite(t, filepath.Join(dir, "run"), "#!/bin/sh\n", 0o755)
		h, size, err := NarHashPath(dir)
		if err != nil {
			t.Fatal(err)
		}
		if size != 712 || h.String() != "sha256:0r676r94s8hq4a90qv65ncxjvjgaqfamyx4xscvxvvc8rllj20v4" {
			t.Errorf("NarHashPath = %s %d", h, size)
		}
	})
	t.Run("unsupported file type", func(t *testing.T) {
		dir := t.TempDir()
		fifo := filepath.Join(dir, "fifo")
		if err := mkfifo(fifo); err != nil {
			t.Skip(err)
		}
		err := DumpPath(io.Discard, dir)
		if !errors.Is(err, ErrBadNar) {
			t.Errorf("DumpPath with a fifo = %v, want ErrBadNar", err)
		}
		if _, _, err := NarHashPath(dir); !errors.Is(err, ErrBadNar) {
			t.Errorf("NarHashPath with a fifo = %v, want ErrBadNar", err)
		}
	})
}

func mustMkdir(t testing.TB, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
}

func mustWrite(t testing.TB, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}
