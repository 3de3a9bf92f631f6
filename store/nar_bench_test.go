package store

import (
	"io"
	"os"
	"path/filepath"
	"testing"
)

// benchTree returns the tree to hash: $DRVMESH_NAR_BENCH_PATH, or a
// generated tree of a few hundred MB.
func benchTree(b *testing.B) string {
	b.Helper()
	if p := os.Getenv("DRVMESH_NAR_BENCH_PATH"); p != "" {
		return p
	}
	dir := b.TempDir()
	big := make([]byte, 32<<20)
	for i := range big {
		big[i] = byte(i * 7)
	}
	for i := range 8 {
		sub := filepath.Join(dir, "d", string(rune('a'+i)))
		mustMkdir(b, sub)
		mustWrite(b, filepath.Join(sub, "big"), string(big), 0o644)
		for j := range 200 {
			mustWrite(b, filepath.Join(sub, "small"+string(rune('a'+j%26))+string(rune('a'+j/26))), string(big[:j*37]), 0o644)
		}
	}
	return dir
}

func BenchmarkNarHashPath(b *testing.B) {
	tree := benchTree(b)
	_, size, err := NarHashPath(tree) // warm the page cache
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(size)
	b.ResetTimer()
	for b.Loop() {
		if _, _, err := NarHashPath(tree); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDumpPath(b *testing.B) {
	tree := benchTree(b)
	var n countWriter
	if err := DumpPath(&n, tree); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(n))
	b.ResetTimer()
	for b.Loop() {
		if err := DumpPath(io.Discard, tree); err != nil {
			b.Fatal(err)
		}
	}
}

type countWriter int64

func (c *countWriter) Write(p []byte) (int, error) { *c += countWriter(len(p)); return len(p), nil }
