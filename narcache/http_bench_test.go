package narcache

import (
	"crypto/sha256"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/drvmesh/drvmesh/store"
)

// benchWriter is the least a ResponseWriter can do: a fresh header map per
// response, as net/http gives, and a discarded body.
type benchWriter struct {
	h      http.Header
	status int
	n      int
}

func (w *benchWriter) Header() http.Header  { return w.h }
func (w *benchWriter) WriteHeader(code int) { w.status = code }
func (w *benchWriter) Write(p []byte) (int, error) {
	w.n += len(p)
	return len(p), nil
}

// benchNarInfoHandler serves n narinfos from a MemIndex and returns their
// request paths.
func benchNarInfoHandler(b *testing.B, n int, wrap func(Index) Index, cfg HandlerConfig) (*Handler, []string) {
	b.Helper()
	sk, err := store.GenerateKey("bench-1")
	if err != nil {
		b.Fatal(err)
	}
	d := newTestDisk(b, DiskConfig{Compressions: []string{CompressionZstd}})
	e := ingestEntry(b, d, testPath, makeNar(b, []byte("bench")))
	idx := NewMemIndex()
	paths := make([]string, n)
	for i := range n {
		sum := sha256.Sum256(fmt.Appendf(nil, "path %d", i))
		hp := store.EncodeNix32(store.CompressHash(sum[:], 20))
		info := *e.Info
		info.StorePath = "/nix/store/" + hp + "-bench"
		idx.Put(Entry{Info: &info, Files: e.Files, Version: 1})
		paths[i] = "/" + hp + ".narinfo"
	}
	cfg.Disk, cfg.Index, cfg.Key = d, idx, &sk
	if wrap != nil {
		cfg.Index = wrap(idx)
	}
	h, err := NewHandler(cfg)
	if err != nil {
		b.Fatal(err)
	}
	return h, paths
}

// BenchmarkHandler_ServeNarInfo measures the handler's own cost of a
// cached narinfo, without the HTTP server around it.
func BenchmarkHandler_ServeNarInfo(b *testing.B) {
	for _, bc := range []struct {
		name    string
		wrap    func(Index) Index
		recheck time.Duration
	}{
		{"version", nil, 0},
		{"lookup", func(i Index) Index { return lookupOnly{i} }, 0},
		{"recheck", func(i Index) Index { return lookupOnly{i} }, time.Minute},
	} {
		b.Run(bc.name, func(b *testing.B) {
			h, paths := benchNarInfoHandler(b, 10000, bc.wrap, HandlerConfig{NarInfoRecheck: bc.recheck})
			reqs := make([]*http.Request, len(paths))
			for i, p := range paths {
				reqs[i] = httptest.NewRequest("GET", p, nil)
				w := &benchWriter{h: http.Header{}}
				h.ServeHTTP(w, reqs[i]) // render once
				if w.status != 0 && w.status != http.StatusOK {
					b.Fatalf("%s: status %d", p, w.status)
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				w := &benchWriter{}
				i := 0
				for pb.Next() {
					w.h = make(http.Header, 4)
					h.ServeHTTP(w, reqs[i])
					i = (i + 1) % len(reqs)
				}
			})
		})
	}
}

// lookupOnly hides any optional method of an Index.
type lookupOnly struct{ Index }
