package store

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/drvmesh/drvmesh/internal/testutil"
)

// makeNarTestTree builds a tree covering every NAR feature under dir/tree.
func makeNarTestTree(t testing.TB, dir string) string {
	t.Helper()
	tree := filepath.Join(dir, "tree")
	mustMkdir(t, filepath.Join(tree, "a", "b", "c"))
	mustMkdir(t, filepath.Join(tree, "empty-dir"))
	mustWrite(t, filepath.Join(tree, "empty-file"), "", 0o644)
	mustWrite(t, filepath.Join(tree, "a", "run.sh"), "#!/bin/sh\necho hi\n", 0o755)
	mustWrite(t, filepath.Join(tree, "name with spaces"), "s", 0o644)
	for _, n := range []string{"Beta", "Zeta", "alpha", "_x", "~y", "a.b", "a-b"} {
		mustWrite(t, filepath.Join(tree, n), n, 0o644)
	}
	big := bytes.Repeat([]byte("0123456789abcdefghijklmnopqrstuvwxyz\n"), 3<<20/37)
	big = append(big, "tail"...) // not a multiple of 8
	mustWrite(t, filepath.Join(tree, "a", "b", "c", "big"), string(big), 0o644)
	for name, target := range map[string]string{"rel-link": "a/run.sh", "abs-link": "/nonexistent/abs", "dangling": "nowhere"} {
		if err := os.Symlink(target, filepath.Join(tree, name)); err != nil {
			t.Fatal(err)
		}
	}
	return tree
}

func runNix(t *testing.T, dir string, stdin []byte, name string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = testutil.NixEnv(dir, "")
	cmd.Stdin = bytes.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %v: %v: %s", name, args, err, stderr.String())
	}
	return out
}

func TestDumpPath_MatchesNix(t *testing.T) {
	testutil.RequireNix(t)
	dir := t.TempDir()
	tree := makeNarTestTree(t, dir)

	t.Run("dump", func(t *testing.T) {
		want := runNix(t, dir, nil, "nix-store", "--dump", tree)
		var got bytes.Buffer
		if err := DumpPath(&got, tree); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Bytes(), want) {
			t.Fatalf("DumpPath differs from nix-store --dump (%d vs %d bytes)", got.Len(), len(want))
		}
	})
	t.Run("hash", func(t *testing.T) {
		want := strings.TrimSpace(string(runNix(t, dir, nil, "nix-hash", "--type", "sha256", "--base32", tree)))
		h, _, err := NarHashPath(tree)
		if err != nil {
			t.Fatal(err)
		}
		if h.Nix32() != want {
			t.Errorf("NarHashPath = %s, nix-hash = %s", h.Nix32(), want)
		}
	})
	t.Run("nix restores our dump", func(t *testing.T) {
		var ours bytes.Buffer
		if err := DumpPath(&ours, tree); err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(dir, "nix-restored")
		runNix(t, dir, ours.Bytes(), "nix-store", "--restore", out)
		again := runNix(t, dir, nil, "nix-store", "--dump", out)
		if !bytes.Equal(again, ours.Bytes()) {
			t.Error("nix-store --restore of our dump does not dump back to the same NAR")
		}
		fi, err := os.Stat(filepath.Join(out, "a", "run.sh"))
		if err != nil || fi.Mode()&0o100 == 0 {
			t.Errorf("restored run.sh not executable: %v %v", fi, err)
		}
	})
	t.Run("we restore nix's dump", func(t *testing.T) {
		nar := runNix(t, dir, nil, "nix-store", "--dump", tree)
		out := filepath.Join(dir, "restored")
		if err := Restore(bytes.NewReader(nar), out); err != nil {
			t.Fatal(err)
		}
		if again := runNix(t, dir, nil, "nix-store", "--dump", out); !bytes.Equal(again, nar) {
			t.Error("nix-store --dump of our restore differs")
		}
	})
}

func TestListNar_MatchesNix(t *testing.T) {
	testutil.RequireNix(t)
	for name, nar := range testNars(t) {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			f := filepath.Join(dir, "x.nar")
			if err := os.WriteFile(f, nar, 0o644); err != nil {
				t.Fatal(err)
			}
			want := runNix(t, dir, nil, "nix", "nar", "ls", "--json", "-R", f, "/")
			l, err := ListNar(bytes.NewReader(nar))
			if err != nil {
				t.Fatal(err)
			}
			got, err := l.Root.MarshalJSON()
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != strings.TrimSpace(string(want)) {
				t.Errorf("listing differs from nix nar ls --json -R\n got %s\nwant %s", got, want)
			}
		})
	}
}
