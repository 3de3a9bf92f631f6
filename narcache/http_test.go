package narcache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/drvmesh/drvmesh/store"
)

// testPath is a made-up store path for the test nars.
const testPath = "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-hello-1.0"

// ingestEntry ingests nar into d and returns its index entry.
func ingestEntry(t testing.TB, d *Disk, storePath string, nar []byte) Entry {
	t.Helper()
	res, err := d.Ingest(context.Background(), bytes.NewReader(nar), Expect{})
	if err != nil {
		t.Fatal(err)
	}
	return Entry{Info: &store.NarInfo{StorePath: storePath, NarHash: res.NarHash, NarSize: res.NarSize,
		References: []string{"xp0dpr9yz5h0fk5c5lpj7zzqjbdh3w8c-f"}, Deriver: "lpjpdd3n3m4aqnkgnl86a9d3dz3rh2pv-b.drv"},
		Files: res.Files, Version: 1}
}

func get(t testing.TB, srv *httptest.Server, method, path string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return resp, b
}

func TestHandler_ServeHTTP(t *testing.T) {
	sk, err := store.GenerateKey("mesh-1")
	if err != nil {
		t.Fatal(err)
	}
	d := newTestDisk(t, DiskConfig{Compressions: []string{CompressionZstd, CompressionXz}})
	nar := makeNar(t, bytes.Repeat([]byte("payload "), 3000))
	idx := NewMemIndex()
	e := ingestEntry(t, d, testPath, nar)
	idx.Put(e)
	logs := fakeLogs{"0123456789abcdfghijklmnpqrsvwxyz-hello-1.0.drv": "building hello\n"}
	h, err := NewHandler(HandlerConfig{Disk: d, Index: idx, Key: &sk, Logs: logs, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()

	t.Run("nix-cache-info", func(t *testing.T) {
		resp, body := get(t, srv, "GET", "/nix-cache-info")
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/x-nix-cache-info" {
			t.Fatalf("status %d, type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		if string(body) != "StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 30\n" {
			t.Fatalf("body %q", body)
		}
	})
	var ni *store.NarInfo
	t.Run("narinfo parses and verifies", func(t *testing.T) {
		resp, body := get(t, srv, "GET", "/0123456789abcdfghijklmnpqrsvwxyz.narinfo")
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/x-nix-narinfo" ||
			!strings.Contains(resp.Header.Get("Cache-Control"), "max-age=3600") {
			t.Fatalf("status %d, headers %v", resp.StatusCode, resp.Header)
		}
		ni, err = store.ParseNarInfo(body)
		if err != nil {
			t.Fatalf("%v\n%s", err, body)
		}
		if !sk.Public().VerifyNarInfo(ni, "/nix/store") {
			t.Fatalf("signature does not verify:\n%s", body)
		}
		other, _ := store.GenerateKey("mesh-1")
		if other.Public().VerifyNarInfo(ni, "/nix/store") {
			t.Fatal("verifies with another key")
		}
		if ni.Compression != CompressionZstd || ni.URL != e.Files[0].URL() || !ni.NarHash.Equal(sha(nar)) {
			t.Fatalf("narinfo names %s %s", ni.Compression, ni.URL)
		}
		_, again := get(t, srv, "GET", "/0123456789abcdfghijklmnpqrsvwxyz.narinfo")
		if !bytes.Equal(body, again) {
			t.Fatal("cached rendering differs")
		}
	})
	t.Run("nar from narinfo URL", func(t *testing.T) {
		resp, body := get(t, srv, "GET", "/"+ni.URL)
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/x-nix-nar" {
			t.Fatalf("status %d type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		if !sha(body).Equal(ni.FileHash) || int64(len(body)) != ni.FileSize {
			t.Fatal("file bytes do not match FileHash")
		}
		rc, err := newDecompressor(ni.Compression, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(readAll(t, rc), nar) {
			t.Fatal("decompressed nar differs")
		}
		head, hb := get(t, srv, "HEAD", "/"+ni.URL)
		if head.StatusCode != 200 || len(hb) != 0 || head.ContentLength != ni.FileSize {
			t.Fatalf("HEAD: %d len %d", head.StatusCode, head.ContentLength)
		}
	})
	t.Run("guix routes", func(t *testing.T) {
		resp, body := get(t, srv, "GET", "/nar/0123456789abcdfghijklmnpqrsvwxyz-hello-1.0")
		if resp.StatusCode != 200 || !bytes.Equal(body, nar) {
			t.Fatalf("uncompressed: status %d, %d bytes", resp.StatusCode, len(body))
		}
		resp, body = get(t, srv, "GET", "/nar/xz/0123456789abcdfghijklmnpqrsvwxyz-hello-1.0")
		if resp.StatusCode != 200 || !sha(body).Equal(e.Files[1].FileHash) {
			t.Fatalf("xz: status %d", resp.StatusCode)
		}
		if resp, _ := get(t, srv, "GET", "/nar/zstd/0123456789abcdfghijklmnpqrsvwxyz-other"); resp.StatusCode != 404 {
			t.Fatalf("wrong name: status %d", resp.StatusCode)
		}
	})
	t.Run("log", func(t *testing.T) {
		resp, body := get(t, srv, "GET", "/log/0123456789abcdfghijklmnpqrsvwxyz-hello-1.0.drv")
		if resp.StatusCode != 200 || string(body) != "building hello\n" ||
			resp.Header.Get("Content-Type") != "text/plain; charset=utf-8" {
			t.Fatalf("status %d body %q", resp.StatusCode, body)
		}
	})
	t.Run("misses are 404 with a short ttl", func(t *testing.T) {
		for _, p := range []string{"/1123456789abcdfghijklmnpqrsvwxyz.narinfo", "/nar/" + strings.Repeat("0", 52) + ".nar.zst",
			"/log/none.drv", "/nar/zstd/zz", "/etc/passwd", "/nar/../../x"} {
			resp, _ := get(t, srv, "GET", p)
			if resp.StatusCode != 404 || resp.Header.Get("Cache-Control") != "public, max-age=60" {
				t.Fatalf("%s: status %d cc %q", p, resp.StatusCode, resp.Header.Get("Cache-Control"))
			}
		}
		if resp, _ := get(t, srv, "POST", "/nix-cache-info"); resp.StatusCode != 405 {
			t.Fatalf("POST: %d", resp.StatusCode)
		}
	})
}

// fakeLogs serves logs from a map.
type fakeLogs map[string]string

func (l fakeLogs) OpenLog(_ context.Context, drv string) (io.ReadCloser, error) {
	s, ok := l[drv]
	if !ok {
		return nil, fmt.Errorf("log %s: %w", drv, ErrNotFound)
	}
	return io.NopCloser(strings.NewReader(s)), nil
}

// diskFetcher serves files from other nodes' disks, optionally corrupting
// the bytes of one node.
type diskFetcher struct {
	disks   map[string]*Disk
	corrupt map[string]bool
}

func (f diskFetcher) Fetch(_ context.Context, h Holder, want File) (io.ReadCloser, int64, error) {
	d := f.disks[h.ID]
	if d == nil {
		return nil, 0, fmt.Errorf("no route to %s: %w", h.ID, ErrPeer)
	}
	fh, st, err := d.Open(want.Key())
	if err != nil {
		return nil, 0, err
	}
	if !f.corrupt[h.ID] {
		return fh, st.FileSize, nil
	}
	b, err := io.ReadAll(fh)
	fh.Close()
	if err != nil {
		return nil, 0, err
	}
	b[len(b)/2] ^= 0xff
	return io.NopCloser(bytes.NewReader(b)), int64(len(b)), nil
}

// badPeers records OnBadPeer calls.
type badPeers struct {
	mu  sync.Mutex
	ids []string
}

func (b *badPeers) report(id string, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.ids = append(b.ids, id)
}

func (b *badPeers) list() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.ids...)
}

func TestHandler_FetchThrough(t *testing.T) {
	nar := makeNar(t, bytes.Repeat([]byte("remote "), 50000))
	remote := newTestDisk(t, DiskConfig{})
	e := ingestEntry(t, remote, testPath, nar)
	key := e.Files[0].Key()

	setup := func(t *testing.T, corrupt bool) (*httptest.Server, *Disk, *badPeers) {
		local := newTestDisk(t, DiskConfig{})
		idx := NewMemIndex()
		idx.Put(e)
		idx.SetHolders(key, []Holder{{ID: "B"}})
		bad := &badPeers{}
		h, err := NewHandler(HandlerConfig{Disk: local, Index: idx, Logger: testLogger(t), OnBadPeer: bad.report,
			Fetcher: diskFetcher{disks: map[string]*Disk{"B": remote}, corrupt: map[string]bool{"B": corrupt}}})
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(h)
		t.Cleanup(srv.Close)
		return srv, local, bad
	}
	t.Run("streams and keeps a copy", func(t *testing.T) {
		srv, local, bad := setup(t, false)
		if local.Has(key) {
			t.Fatal("local disk starts with the file")
		}
		resp, body := get(t, srv, "GET", "/"+e.Files[0].URL())
		if resp.StatusCode != 200 || !sha(body).Equal(e.Files[0].FileHash) {
			t.Fatalf("status %d, %d bytes", resp.StatusCode, len(body))
		}
		if !local.Has(key) {
			t.Fatal("no local copy kept")
		}
		rc, _, err := local.OpenNar(key)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(readAll(t, rc), nar) || len(bad.list()) != 0 {
			t.Fatal("local copy differs or a good peer was reported")
		}
	})
	t.Run("corrupt bytes are dropped and reported", func(t *testing.T) {
		srv, local, bad := setup(t, true)
		req, _ := http.NewRequest("GET", srv.URL+"/"+e.Files[0].URL(), nil)
		resp, err := srv.Client().Do(req)
		if err == nil {
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		if err == nil {
			t.Fatal("client got a complete response for corrupt bytes")
		}
		if local.Has(key) || len(dirNames(t, local.Dir())) != 0 {
			t.Fatal("kept corrupt bytes")
		}
		if ids := bad.list(); len(ids) != 1 || ids[0] != "B" {
			t.Fatalf("reported %v", ids)
		}
		if !errors.Is(err, io.ErrUnexpectedEOF) && !strings.Contains(err.Error(), "EOF") {
			t.Logf("client error: %v", err)
		}
	})
	t.Run("uncompressed guix form via peer", func(t *testing.T) {
		srv, local, _ := setup(t, false)
		resp, body := get(t, srv, "GET", "/nar/0123456789abcdfghijklmnpqrsvwxyz-hello-1.0")
		if resp.StatusCode != 200 || !bytes.Equal(body, nar) || !local.Has(key) {
			t.Fatalf("status %d, %d bytes", resp.StatusCode, len(body))
		}
	})
}
