package narcache

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/drvmesh/drvmesh/store"
)

// benchNar is the NAR the compression benchmarks use: the file named by
// DRVMESH_BENCH_NAR (bench/compression.sh dumps a real tree there), else
// the NAR of Go's own src/encoding tree, a few MB of real source.
func benchNar(b *testing.B) []byte {
	b.Helper()
	if p := os.Getenv("DRVMESH_BENCH_NAR"); p != "" {
		nar, err := os.ReadFile(p)
		if err != nil {
			b.Fatal(err)
		}
		return nar
	}
	var buf bytes.Buffer
	if err := store.DumpPath(&buf, filepath.Join(runtime.GOROOT(), "src", "encoding")); err != nil {
		b.Skipf("no tree to dump: %v", err)
	}
	return buf.Bytes()
}

// compressAll compresses nar with narcache's own encoder settings.
func compressAll(b *testing.B, compression string, nar []byte) []byte {
	b.Helper()
	var buf bytes.Buffer
	buf.Grow(len(nar) / 2)
	w, err := newCompressor(compression, &buf)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := w.Write(nar); err != nil {
		b.Fatal(err)
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	return buf.Bytes()
}

// BenchmarkCompression measures, for each compression narcache writes,
// compression and decompression speed in MB/s of uncompressed NAR and the
// ratio compressed/uncompressed; "ingest" is the whole Disk.Ingest path
// (NAR check, NarHash, FileHash, compression, temp file and rename).
func BenchmarkCompression(b *testing.B) {
	nar := benchNar(b)
	for _, c := range []string{CompressionZstd, CompressionXz} {
		var comp []byte
		b.Run(c+"/compress", func(b *testing.B) {
			b.SetBytes(int64(len(nar)))
			for b.Loop() {
				comp = compressAll(b, c, nar)
			}
			b.ReportMetric(float64(len(comp))/float64(len(nar)), "ratio")
		})
		b.Run(c+"/decompress", func(b *testing.B) {
			if comp == nil {
				comp = compressAll(b, c, nar)
			}
			b.SetBytes(int64(len(nar)))
			for b.Loop() {
				r, err := newDecompressor(c, bytes.NewReader(comp))
				if err != nil {
					b.Fatal(err)
				}
				n, err := io.Copy(io.Discard, r)
				r.Close()
				if err != nil || n != int64(len(nar)) {
					b.Fatalf("decompressed %d of %d bytes: %v", n, len(nar), err)
				}
			}
		})
		b.Run(c+"/ingest", func(b *testing.B) {
			d, err := NewDisk(DiskConfig{Dir: b.TempDir(), Compressions: []string{c}})
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(nar)))
			var size int64
			for b.Loop() {
				res, err := d.Ingest(context.Background(), bytes.NewReader(nar), Expect{})
				if err != nil {
					b.Fatal(err)
				}
				size = res.Files[0].FileSize
				if err := d.Remove(res.Files[0].Key()); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(size)/float64(len(nar)), "ratio")
		})
	}
}
