package httplimit

import (
	"sync"
	"time"
)

// Rate is a token bucket per key (a source address): burst requests at
// once, then one every per. It remembers at most maxKeys keys; when full,
// keys whose bucket has refilled are forgotten first, and if none has, a
// new key is refused (a flood of addresses cannot grow it without bound).
type Rate struct {
	burst   float64
	per     time.Duration
	maxKeys int
	now     func() time.Time

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	at     time.Time
	warned time.Time // when the last refusal was reported (see Allow)
}

// NewRate makes a Rate. burst and per must be positive.
func NewRate(burst int, per time.Duration, maxKeys int) *Rate {
	return &Rate{burst: float64(burst), per: per, maxKeys: maxKeys, now: time.Now, buckets: map[string]*bucket{}}
}

// Allow takes a token for key. When it refuses, report says whether this
// is the first refusal for key in the last minute: log only then, so a
// flood costs one log line a minute per source.
func (r *Rate) Allow(key string) (ok, report bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	b, known := r.buckets[key]
	if !known {
		if len(r.buckets) >= r.maxKeys && !r.sweep(now) {
			return false, false
		}
		b = &bucket{tokens: r.burst, at: now}
		r.buckets[key] = b
	}
	b.tokens = min(r.burst, b.tokens+float64(now.Sub(b.at))/float64(r.per))
	b.at = now
	if b.tokens >= 1 {
		b.tokens--
		return true, false
	}
	if now.Sub(b.warned) >= time.Minute {
		b.warned = now
		return false, true
	}
	return false, false
}

// sweep forgets keys whose bucket is full again; it reports whether it
// freed any.
func (r *Rate) sweep(now time.Time) bool {
	freed := false
	full := time.Duration(r.burst * float64(r.per))
	for k, b := range r.buckets {
		if now.Sub(b.at) >= full {
			delete(r.buckets, k)
			freed = true
		}
	}
	return freed
}
