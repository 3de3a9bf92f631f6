package store

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func FuzzNarReader(f *testing.F) {
	for _, dir := range []string{nixNarDir, guixNarDir} {
		files, _ := filepath.Glob(filepath.Join(dir, "*.nar"))
		for _, file := range files {
			if b, err := os.ReadFile(file); err == nil && len(b) < 1<<16 {
				f.Add(b)
			}
		}
	}
	f.Add(narDirOf(entry("a", narFile("x")), entry("b", []any{"(", "type", "symlink", "target", "/tmp", ")"})))
	f.Fuzz(func(t *testing.T, nar []byte) {
		h, size, checkErr := CheckNar(bytes.NewReader(nar))
		if checkErr != nil && !errors.Is(checkErr, ErrBadNar) {
			t.Fatalf("CheckNar error does not wrap ErrBadNar: %v", checkErr)
		}
		_, listErr := ListNar(bytes.NewReader(nar))
		if (listErr == nil) != (checkErr == nil) {
			t.Fatalf("CheckNar = %v but ListNar = %v", checkErr, listErr)
		}
		r := NewNarReader(bytes.NewReader(nar))
		for {
			_, err := r.Next()
			if err != nil {
				if errors.Is(err, io.EOF) != (checkErr == nil) {
					t.Fatalf("NarReader.Next = %v but CheckNar = %v", err, checkErr)
				}
				break
			}
		}
		base, sentinel := sentinelDir(t)
		out := filepath.Join(base, "out")
		restoreErr := Restore(bytes.NewReader(nar), out)
		checkSentinel(t, base, sentinel)
		if checkErr != nil {
			if !errors.Is(restoreErr, ErrBadNar) {
				t.Fatalf("Restore = %v, want ErrBadNar", restoreErr)
			}
			return
		}
		if restoreErr != nil {
			if errors.Is(restoreErr, ErrBadNar) {
				t.Fatalf("CheckNar accepted but Restore = %v", restoreErr)
			}
			t.Skipf("filesystem refused the tree: %v", restoreErr)
		}
		var dump bytes.Buffer
		if err := DumpPath(&dump, out); err != nil {
			t.Fatalf("DumpPath of restored tree: %v", err)
		}
		if !bytes.Equal(dump.Bytes(), nar) {
			t.Fatalf("accepted NAR does not re-dump byte-exact")
		}
		if size != int64(len(nar)) || !h.Equal(SHA256Hash(sha256Sum(nar))) {
			t.Fatalf("CheckNar = %s %d, want the hash and size of the input", h, size)
		}
	})
}
