package narcache

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestNarInfoCache_Put(t *testing.T) {
	body := func(i int) *rendered { return newRendered(uint64(i), []byte(strconv.Itoa(i)), time.Time{}) }
	key := func(i int) string { return fmt.Sprintf("%032d", i) }

	t.Run("stays within size", func(t *testing.T) {
		c := newNarInfoCache(100)
		for i := range 1000 {
			c.put(key(i), body(i))
			if n := c.len(); n > 100 {
				t.Fatalf("after %d puts the cache holds %d", i+1, n)
			}
		}
		if c.get(key(999)) == nil {
			t.Fatal("the last put is gone")
		}
	})
	t.Run("large sizes are sharded and bounded", func(t *testing.T) {
		c := newNarInfoCache(65536)
		if len(c.shards) < 2 {
			t.Fatalf("%d shards", len(c.shards))
		}
		for i := range 200000 {
			c.put(key(i), body(i))
		}
		if n := c.len(); n > 65536+len(c.shards) || n < 65536 {
			t.Fatalf("cache holds %d, want 65536 to %d", n, 65536+len(c.shards))
		}
	})
	t.Run("a working set of exactly size keys stays cached", func(t *testing.T) {
		c := newNarInfoCache(10000)
		for round := range 3 {
			for i := range 10000 {
				if round > 0 && c.get(key(i)) == nil {
					t.Fatalf("round %d: key %d was evicted", round, i)
				}
				c.put(key(i), body(i))
			}
		}
	})
	t.Run("read entries get a second chance", func(t *testing.T) {
		c := newNarInfoCache(10)
		for i := range 10 {
			c.put(key(i), body(i))
		}
		if c.get(key(0)) == nil {
			t.Fatal("missing before eviction")
		}
		c.put(key(10), body(10))
		if c.get(key(0)) == nil {
			t.Fatal("a just-read entry was evicted")
		}
		if c.get(key(1)) != nil {
			t.Fatal("the oldest unread entry was kept")
		}
	})
	t.Run("replacing keeps one entry per key", func(t *testing.T) {
		c := newNarInfoCache(10)
		for i := range 5 {
			c.put(key(1), body(i))
		}
		if r := c.get(key(1)); c.len() != 1 || r == nil || r.version != 4 {
			t.Fatalf("len %d, got %+v", c.len(), r)
		}
	})
	t.Run("negative size keeps nothing", func(t *testing.T) {
		c := newNarInfoCache(-1)
		if r := c.put(key(1), body(1)); r == nil || c.get(key(1)) != nil {
			t.Fatal("cached with size -1")
		}
	})
	t.Run("concurrent use", func(t *testing.T) {
		c := newNarInfoCache(50)
		var wg sync.WaitGroup
		for g := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 2000 {
					k := key((i * (g + 1)) % 120)
					if r := c.get(k); r != nil && string(r.body) != strconv.Itoa(int(r.version)) {
						t.Errorf("key %s holds %q for version %d", k, r.body, r.version)
						return
					}
					c.put(k, body((i*(g+1))%120))
				}
			}()
		}
		wg.Wait()
		if c.len() > 50 {
			t.Fatalf("cache holds %d", c.len())
		}
	})
}

// countingIndex counts calls into a MemIndex. lookupCounter hides Version,
// so that the handler must use Lookup; versionCounter counts it.
type countingIndex struct {
	*MemIndex
	lookups, versions atomic.Int64
}

func (c *countingIndex) Lookup(hp string) (Entry, bool) {
	c.lookups.Add(1)
	return c.MemIndex.Lookup(hp)
}

type lookupCounter struct{ c *countingIndex }

func (l lookupCounter) Lookup(hp string) (Entry, bool) { return l.c.Lookup(hp) }
func (l lookupCounter) Holders(key string) []Holder    { return l.c.Holders(key) }

type versionCounter struct{ *countingIndex }

func (v versionCounter) Version(hp string) (uint64, bool) {
	v.versions.Add(1)
	return v.MemIndex.Version(hp)
}

// removableIndex is a MemIndex whose entries can be hidden.
type removableIndex struct {
	*MemIndex
	gone atomic.Bool
}

func (r *removableIndex) Lookup(hp string) (Entry, bool) {
	if r.gone.Load() {
		return Entry{}, false
	}
	return r.MemIndex.Lookup(hp)
}

func (r *removableIndex) Version(hp string) (uint64, bool) {
	if r.gone.Load() {
		return 0, false
	}
	return r.MemIndex.Version(hp)
}

func TestHandler_ServeNarInfo(t *testing.T) {
	const path = "/0123456789abcdfghijklmnpqrsvwxyz.narinfo"
	d := newTestDisk(t, DiskConfig{Compressions: []string{CompressionZstd}})
	e := ingestEntry(t, d, testPath, makeNar(t, []byte("narinfo")))
	serve := func(t *testing.T, h *Handler, method string) *httptest.ResponseRecorder {
		t.Helper()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
		return rec
	}
	newHandler := func(t *testing.T, idx Index, recheck time.Duration) *Handler {
		t.Helper()
		h, err := NewHandler(HandlerConfig{Disk: d, Index: idx, NarInfoRecheck: recheck, Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	withSig := func(sig string) Entry {
		info := *e.Info
		info.Sigs = []string{sig}
		return Entry{Info: &info, Files: e.Files}
	}

	for _, withVersion := range []bool{true, false} {
		t.Run(fmt.Sprintf("version index %v", withVersion), func(t *testing.T) {
			ci := &countingIndex{MemIndex: NewMemIndex()}
			ci.MemIndex.Put(withSig("a:1"))
			var idx Index = lookupCounter{ci}
			if withVersion {
				idx = versionCounter{ci}
			}
			h := newHandler(t, idx, 0)
			first := serve(t, h, "GET")
			if first.Code != 200 || !bytes.Contains(first.Body.Bytes(), []byte("Sig: a:1\n")) ||
				first.Header().Get("Content-Length") != strconv.Itoa(first.Body.Len()) {
				t.Fatalf("status %d, headers %v, body:\n%s", first.Code, first.Header(), first.Body)
			}
			if _, err := http.ParseTime(first.Header().Get("Date")); err != nil {
				t.Fatalf("Date header: %v", err)
			}
			again := serve(t, h, "GET")
			if !bytes.Equal(first.Body.Bytes(), again.Body.Bytes()) {
				t.Fatal("second rendering differs")
			}
			if withVersion && (ci.lookups.Load() != 1 || ci.versions.Load() != 1) {
				t.Fatalf("%d lookups, %d version checks; want 1, 1", ci.lookups.Load(), ci.versions.Load())
			}
			if !withVersion && ci.lookups.Load() != 2 {
				t.Fatalf("%d lookups, want 2", ci.lookups.Load())
			}
			ci.MemIndex.Put(withSig("b:2"))
			changed := serve(t, h, "GET")
			if !bytes.Contains(changed.Body.Bytes(), []byte("Sig: b:2\n")) || bytes.Contains(changed.Body.Bytes(), []byte("a:1")) {
				t.Fatalf("a new version still serves the old rendering:\n%s", changed.Body)
			}
			head := serve(t, h, "HEAD")
			if head.Code != 200 || head.Body.Len() != 0 || head.Header().Get("Content-Length") != strconv.Itoa(changed.Body.Len()) {
				t.Fatalf("HEAD: status %d, %d bytes, headers %v", head.Code, head.Body.Len(), head.Header())
			}
		})
	}
	t.Run("removed entries are 404", func(t *testing.T) {
		for _, recheck := range []time.Duration{0, time.Nanosecond} {
			ri := &removableIndex{MemIndex: NewMemIndex()}
			ri.MemIndex.Put(e)
			h := newHandler(t, ri, recheck)
			if rec := serve(t, h, "GET"); rec.Code != 200 {
				t.Fatalf("recheck %v: status %d", recheck, rec.Code)
			}
			ri.gone.Store(true)
			if rec := serve(t, h, "GET"); rec.Code != http.StatusNotFound {
				t.Fatalf("recheck %v: removed entry answers %d", recheck, rec.Code)
			}
		}
	})
	t.Run("recheck interval spares the index", func(t *testing.T) {
		ci := &countingIndex{MemIndex: NewMemIndex()}
		ci.MemIndex.Put(withSig("a:1"))
		h := newHandler(t, versionCounter{ci}, time.Hour)
		for range 5 {
			if rec := serve(t, h, "GET"); rec.Code != 200 || !bytes.Contains(rec.Body.Bytes(), []byte("a:1")) {
				t.Fatalf("status %d, body:\n%s", rec.Code, rec.Body)
			}
		}
		if ci.lookups.Load() != 1 || ci.versions.Load() != 0 {
			t.Fatalf("%d lookups, %d version checks within the interval; want 1, 0", ci.lookups.Load(), ci.versions.Load())
		}
		ci.MemIndex.Put(withSig("b:2"))
		if rec := serve(t, h, "GET"); !bytes.Contains(rec.Body.Bytes(), []byte("a:1")) {
			t.Fatal("the index was asked within the interval")
		}
	})
	t.Run("an unservable entry is not cached", func(t *testing.T) {
		ci := &countingIndex{MemIndex: NewMemIndex()}
		ci.MemIndex.Put(Entry{Info: e.Info, Files: []File{{Compression: "lz4", FileHash: e.Files[0].FileHash}}})
		h := newHandler(t, versionCounter{ci}, 0)
		for range 2 {
			if rec := serve(t, h, "GET"); rec.Code != http.StatusNotFound {
				t.Fatalf("status %d", rec.Code)
			}
		}
		if h.cache.len() != 0 || ci.lookups.Load() != 2 {
			t.Fatalf("cache holds %d, %d lookups", h.cache.len(), ci.lookups.Load())
		}
	})
}
