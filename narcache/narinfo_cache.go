package narcache

import (
	"hash/maphash"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// rendered is a cached narinfo response. Only lastCheck and used change
// after it is built.
type rendered struct {
	version   uint64
	body      []byte
	length    []string     // Content-Length header value
	lastCheck atomic.Int64 // monotonic time (since monoEpoch) the index last confirmed version
	used      atomic.Bool  // read since the eviction hand last passed
}

func newRendered(version uint64, body []byte, now time.Time) *rendered {
	r := &rendered{version: version, body: body, length: []string{strconv.Itoa(len(body))}}
	r.checked(now)
	return r
}

// monoEpoch anchors recheck times to the monotonic clock, so that a wall
// clock step neither extends nor cuts a recheck interval.
var monoEpoch = time.Now()

// checked records that the index confirmed the version at now; a zero now
// (no recheck interval) records nothing.
func (r *rendered) checked(now time.Time) {
	if !now.IsZero() {
		r.lastCheck.Store(int64(now.Sub(monoEpoch)))
	}
}

// fresh reports whether r may be served at now without asking the index.
func (r *rendered) fresh(now time.Time, recheck time.Duration) bool {
	return recheck > 0 && now.Sub(monoEpoch)-time.Duration(r.lastCheck.Load()) < recheck
}

// narInfoCache keeps rendered narinfos by hash part, one per hash part,
// in shards so that concurrent readers touch different locks. Reads take
// a read lock and allocate nothing. The size bound is global (shards fill
// unevenly); a put into a full cache evicts from its own shard with the
// clock algorithm (a recently read entry gets a second chance), which is
// close to LRU without writes on the read path.
type narInfoCache struct {
	seed   maphash.Seed
	mask   uint64
	max    int64
	n      atomic.Int64 // cached renderings, over all shards
	shards []cacheShard
}

// cacheShard is one lock's share of the cache.
type cacheShard struct {
	mu    sync.RWMutex
	items map[string]*rendered
	ring  []string // keys in clock order
	hand  int
	_     [64]byte // keep neighbouring shards' locks off one cache line
}

// newNarInfoCache returns a cache of at most size entries (plus one per
// shard in the worst case); size <= 0 keeps nothing.
func newNarInfoCache(size int) *narInfoCache {
	n := 1
	for n < 64 && size/(n*2) >= 256 {
		n *= 2
	}
	c := &narInfoCache{seed: maphash.MakeSeed(), mask: uint64(n - 1), max: int64(size), shards: make([]cacheShard, n)}
	for i := range c.shards {
		c.shards[i].items = make(map[string]*rendered)
	}
	return c
}

func (c *narInfoCache) shard(hashPart string) *cacheShard {
	return &c.shards[maphash.String(c.seed, hashPart)&c.mask]
}

// get returns the rendering cached for hashPart, or nil.
func (c *narInfoCache) get(hashPart string) *rendered {
	s := c.shard(hashPart)
	s.mu.RLock()
	r := s.items[hashPart]
	s.mu.RUnlock()
	if r != nil && !r.used.Load() {
		r.used.Store(true)
	}
	return r
}

// put caches r for hashPart, replacing any older rendering, and returns r.
func (c *narInfoCache) put(hashPart string, r *rendered) *rendered {
	if c.max <= 0 {
		return r
	}
	s := c.shard(hashPart)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.items[hashPart]; ok {
		s.items[hashPart] = r
		return r
	}
	key := strings.Clone(hashPart) // do not pin the request's URL
	s.items[key] = r
	if c.n.Load() < c.max || len(s.ring) == 0 {
		c.n.Add(1)
		s.ring = append(s.ring, key)
		return r
	}
	for {
		old := s.items[s.ring[s.hand]]
		if old.used.Load() {
			old.used.Store(false)
			s.hand = (s.hand + 1) % len(s.ring)
			continue
		}
		delete(s.items, s.ring[s.hand])
		s.ring[s.hand] = key
		s.hand = (s.hand + 1) % len(s.ring)
		return r
	}
}

// len is the number of cached renderings.
func (c *narInfoCache) len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += len(s.items)
		s.mu.RUnlock()
	}
	return n
}

// dateHeader keeps the Date header value of the current second, so that
// busy responses share one formatting instead of net/http formatting the
// time for each.
type dateHeader struct {
	cur atomic.Pointer[dateValue]
}

type dateValue struct {
	sec int64
	hdr []string // never modified once published
}

// get returns the Date header value for now.
func (d *dateHeader) get(now time.Time) []string {
	sec := now.Unix()
	if v := d.cur.Load(); v != nil && v.sec == sec {
		return v.hdr
	}
	v := &dateValue{sec: sec, hdr: []string{now.UTC().Format(http.TimeFormat)}}
	d.cur.Store(v)
	return v.hdr
}
