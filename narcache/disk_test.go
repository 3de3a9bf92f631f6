package narcache

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/drvmesh/drvmesh/store"
)

func TestDisk_Ingest(t *testing.T) {
	nar := makeNar(t, bytes.Repeat([]byte("drvmesh "), 20000))
	t.Run("every compression round-trips", func(t *testing.T) {
		d := newTestDisk(t, DiskConfig{Compressions: []string{CompressionZstd, CompressionXz, CompressionNone}})
		res, err := d.Ingest(context.Background(), bytes.NewReader(nar), Expect{NarHash: sha(nar), NarSize: int64(len(nar))})
		if err != nil {
			t.Fatal(err)
		}
		if !res.NarHash.Equal(sha(nar)) || res.NarSize != int64(len(nar)) {
			t.Fatalf("nar hash/size = %s/%d", res.NarHash, res.NarSize)
		}
		if len(res.Files) != 3 {
			t.Fatalf("files = %d, want 3", len(res.Files))
		}
		for _, f := range res.Files {
			fh, got, err := d.Open(f.Key())
			if err != nil {
				t.Fatal(err)
			}
			raw := readAll(t, fh)
			if !sha(raw).Equal(f.FileHash) || int64(len(raw)) != f.FileSize || got.Compression != f.Compression {
				t.Fatalf("%s: stored file does not match its FileHash/FileSize", f.Compression)
			}
			rc, _, err := d.OpenNar(f.Key())
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(readAll(t, rc), nar) {
				t.Fatalf("%s: decompressed nar differs", f.Compression)
			}
			if _, err := os.Stat(filepath.Join(d.Dir(), filepath.Base(f.URL()))); err != nil {
				t.Fatalf("%s: not stored under its URL name: %v", f.Compression, err)
			}
		}
		if res.Files[2].FileHash.Equal(res.NarHash) == false {
			t.Fatal("uncompressed file hash differs from the nar hash")
		}
		if res.Files[0].FileSize >= int64(len(nar)) {
			t.Fatal("zstd did not compress")
		}
	})
	t.Run("rejects and keeps nothing", func(t *testing.T) {
		cases := []struct {
			name string
			r    func() io.Reader
			exp  Expect
			want error
		}{
			{"garbage", func() io.Reader { return bytes.NewReader([]byte("not a nar at all, but long enough....")) }, Expect{}, store.ErrBadNar},
			{"truncated", func() io.Reader { return bytes.NewReader(nar[:len(nar)-16]) }, Expect{}, store.ErrBadNar},
			{"trailing", func() io.Reader { return bytes.NewReader(append(append([]byte{}, nar...), 0, 0, 0, 0, 0, 0, 0, 0)) }, Expect{}, store.ErrBadNar},
			{"wrong hash", func() io.Reader { return bytes.NewReader(nar) }, Expect{NarHash: sha([]byte("x"))}, ErrHashMismatch},
			{"wrong size", func() io.Reader { return bytes.NewReader(nar) }, Expect{NarSize: 7}, ErrHashMismatch},
			{"aborted upload", func() io.Reader { return &failAfter{data: nar[:len(nar)/2], err: io.ErrUnexpectedEOF} }, Expect{}, io.ErrUnexpectedEOF},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				d := newTestDisk(t, DiskConfig{Compressions: []string{CompressionZstd, CompressionXz}})
				_, err := d.Ingest(context.Background(), c.r(), c.exp)
				if !errors.Is(err, c.want) {
					t.Fatalf("err = %v, want %v", err, c.want)
				}
				if names := dirNames(t, d.Dir()); len(names) != 0 {
					t.Fatalf("left files behind: %v", names)
				}
				if d.Usage() != 0 || len(d.List()) != 0 {
					t.Fatal("index not empty")
				}
			})
		}
	})
	t.Run("canceled context", func(t *testing.T) {
		d := newTestDisk(t, DiskConfig{})
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := d.Ingest(ctx, bytes.NewReader(nar), Expect{}); !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v", err)
		}
		if names := dirNames(t, d.Dir()); len(names) != 0 {
			t.Fatalf("left files behind: %v", names)
		}
	})
}

func TestDisk_Put(t *testing.T) {
	nar := makeNar(t, bytes.Repeat([]byte("abc"), 5000))
	zst := compress(t, CompressionZstd, nar)
	good := File{Compression: CompressionZstd, FileHash: sha(zst), FileSize: int64(len(zst)), NarHash: sha(nar), NarSize: int64(len(nar))}
	t.Run("verified file is kept", func(t *testing.T) {
		d := newTestDisk(t, DiskConfig{})
		f, err := d.Put(context.Background(), good, bytes.NewReader(zst))
		if err != nil {
			t.Fatal(err)
		}
		if f.Key() != good.Key() || !d.Has(good.Key()) || d.Usage() != int64(len(zst)) {
			t.Fatalf("stored %+v", f)
		}
	})
	corruptNar := append([]byte{}, nar...)
	corruptNar[20] ^= 0xff // breaks the "nix-archive-1" magic
	corrupt := compress(t, CompressionZstd, corruptNar)
	flipped := append([]byte{}, zst...)
	flipped[len(flipped)/2] ^= 0x55
	cases := []struct {
		name string
		want File
		data []byte
		err  error
	}{
		{"wrong file hash", File{Compression: CompressionZstd, FileHash: sha([]byte("other"))}, zst, ErrHashMismatch},
		{"wrong nar hash", File{Compression: CompressionZstd, FileHash: sha(zst), NarHash: sha([]byte("x"))}, zst, ErrHashMismatch},
		{"wrong file size", File{Compression: CompressionZstd, FileHash: sha(zst), FileSize: 3}, zst, ErrHashMismatch},
		{"invalid nar inside", File{Compression: CompressionZstd, FileHash: sha(corrupt)}, corrupt, store.ErrBadNar},
		{"flipped compressed byte", good, flipped, ErrCorrupt},
		{"not zstd", File{Compression: CompressionZstd, FileHash: sha(nar)}, nar, ErrCorrupt},
		{"trailing bytes", File{Compression: CompressionZstd, FileHash: sha(append(append([]byte{}, zst...), 1, 2, 3))}, append(append([]byte{}, zst...), 1, 2, 3), ErrCorrupt},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := newTestDisk(t, DiskConfig{})
			_, err := d.Put(context.Background(), c.want, bytes.NewReader(c.data))
			if !errors.Is(err, c.err) {
				t.Fatalf("err = %v, want %v", err, c.err)
			}
			if names := dirNames(t, d.Dir()); len(names) != 0 {
				t.Fatalf("left files behind: %v", names)
			}
		})
	}
	t.Run("abort leaves nothing", func(t *testing.T) {
		d := newTestDisk(t, DiskConfig{})
		w, err := d.Create(good)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(zst[:len(zst)/2]); err != nil {
			t.Fatal(err)
		}
		if names := dirNames(t, d.Dir()); len(names) != 1 || d.Has(good.Key()) {
			t.Fatalf("during write: %v", names)
		}
		w.Abort()
		if names := dirNames(t, d.Dir()); len(names) != 0 {
			t.Fatalf("left files behind: %v", names)
		}
	})
}

func TestNewDisk(t *testing.T) {
	dir := t.TempDir()
	nar := makeNar(t, []byte("persist me"))
	d := newTestDisk(t, DiskConfig{Dir: dir})
	res, err := d.Ingest(context.Background(), bytes.NewReader(nar), Expect{})
	if err != nil {
		t.Fatal(err)
	}
	leftover := filepath.Join(d.Dir(), tmpPrefix+"123")
	if err := os.WriteFile(leftover, []byte("half"), 0o644); err != nil {
		t.Fatal(err)
	}
	d2 := newTestDisk(t, DiskConfig{Dir: dir})
	f, ok := d2.Stat(res.Files[0].Key())
	if !ok || f.FileSize != res.Files[0].FileSize || f.Compression != CompressionZstd {
		t.Fatalf("reopened disk lost the file: %+v %v", f, ok)
	}
	if _, err := os.Stat(leftover); !os.IsNotExist(err) {
		t.Fatal("leftover temp file not removed")
	}
	if d2.Usage() != res.Files[0].FileSize {
		t.Fatalf("usage = %d", d2.Usage())
	}
}

// fakeHolders counts other holders per key.
type fakeHolders struct {
	mu sync.Mutex
	n  map[string]int
}

func (h *fakeHolders) OtherHolders(key string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n[key]
}

func TestDisk_Evict(t *testing.T) {
	holders := &fakeHolders{n: map[string]int{}}
	d := newTestDisk(t, DiskConfig{Compressions: []string{CompressionNone}, Holders: holders})
	var keys []string
	var size int64
	for i := range 4 {
		nar := makeNar(t, bytes.Repeat([]byte{byte('a' + i)}, 1000))
		res, err := d.Ingest(context.Background(), bytes.NewReader(nar), Expect{})
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, res.Files[0].Key())
		size = res.Files[0].FileSize
	}
	// keys[0] is the oldest but the only copy; keys[1] and keys[2] are held
	// elsewhere; keys[3] is the newest.
	holders.n[keys[1]] = 1
	holders.n[keys[2]] = 2
	holders.n[keys[3]] = 1
	for _, k := range []string{keys[2], keys[3]} { // keys[3] used last
		fh, _, err := d.Open(k)
		if err != nil {
			t.Fatal(err)
		}
		fh.Close()
	}
	d.cfg.Quota = 2 * size
	freed, err := d.Evict()
	if err != nil {
		t.Fatal(err)
	}
	if freed != 2*size {
		t.Fatalf("freed %d, want %d", freed, 2*size)
	}
	if !d.Has(keys[0]) {
		t.Fatal("evicted the last copy")
	}
	if d.Has(keys[1]) || d.Has(keys[2]) || !d.Has(keys[3]) {
		t.Fatalf("wrong files evicted: has %v %v %v", d.Has(keys[1]), d.Has(keys[2]), d.Has(keys[3]))
	}
	t.Run("over quota with only last copies", func(t *testing.T) {
		d.cfg.Quota = 1
		holders.n[keys[3]] = 0
		if _, err := d.Evict(); err != nil {
			t.Fatal(err)
		}
		if !d.Has(keys[0]) || !d.Has(keys[3]) {
			t.Fatal("evicted a last copy")
		}
	})
}
