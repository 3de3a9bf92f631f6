package narcache

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/drvmesh/drvmesh/store"
)

// BenchmarkIngest_SmallOutput is the store step after a small build: one
// output of a few hundred bytes ingested in the default compression.
func BenchmarkIngest_SmallOutput(b *testing.B) {
	src := filepath.Join(b.TempDir(), "out")
	if err := os.WriteFile(src, bytes.Repeat([]byte("leaf-42 /nix/store/0123456789abcdfghijklmnpqrsvwxyz-dep\n"), 4), 0o644); err != nil {
		b.Fatal(err)
	}
	var nar bytes.Buffer
	if err := store.DumpPath(&nar, src); err != nil {
		b.Fatal(err)
	}
	d, err := NewDisk(DiskConfig{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := d.Ingest(ctx, bytes.NewReader(nar.Bytes()), Expect{}); err != nil {
			b.Fatal(err)
		}
	}
}
