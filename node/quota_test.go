package node

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/drvmesh/drvmesh/internal/testutil"
)

// lineCounter counts written log lines that contain match and passes
// every line on.
type lineCounter struct {
	match string
	next  io.Writer
	mu    sync.Mutex
	n     int
}

func (c *lineCounter) Write(p []byte) (int, error) {
	if strings.Contains(string(p), c.match) {
		c.mu.Lock()
		c.n++
		c.mu.Unlock()
	}
	return c.next.Write(p)
}

func (c *lineCounter) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

func TestNode_EnforceQuota(t *testing.T) {
	m := newTestMesh(t)
	// One copy per nar, so that what the quota node uploads stays its own
	// until the test copies it elsewhere.
	m.bootstrap("n1", func(c *Config) { c.MinCopies = 1 })
	overQuota := &lineCounter{match: "nar store over quota", next: tWriter{t, m.logsDone}}
	q := m.join("q", func(c *Config) {
		c.QuotaBytes, c.quotaInterval = 1, 100*time.Millisecond
		c.Logger = slog.New(slog.NewTextHandler(overQuota, &slog.HandlerOptions{Level: slog.LevelWarn}))
	})
	token := m.adminToken("n1")
	n1 := m.node("n1")
	waitSettled(t, m, []string{"n1", "q"})

	shared := makeSource(t, "shared", "held on two nodes\n")
	last := makeSource(t, "last-copy", "held on the quota node only\n")
	uploadSrc(t, q, token, shared)
	uploadSrc(t, q, token, last)
	sharedKey := narKey(t, narRecord(q, shared.hashPart))
	lastKey := narKey(t, narRecord(q, last.hashPart))

	t.Run("sole copies kept over quota", func(t *testing.T) {
		// Wait for quota passes that found nothing they may evict.
		seen := overQuota.count()
		testutil.Eventually(t, 10*time.Second, "two quota passes over quota", func() bool {
			return overQuota.count() >= seen+2
		})
		for _, key := range []string{sharedKey, lastKey} {
			if !narOnDisk(q, key) {
				t.Errorf("q evicted %s, the only copy", key)
			}
		}
		if u := q.disk.Usage(); u <= 1 {
			t.Errorf("usage %d: expected to stay over the 1-byte quota", u)
		}
	})

	t.Run("copy held elsewhere evicted", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := q.keep.AskReplicate(ctx, "n1", shared.hashPart); err != nil {
			t.Fatalf("replicate to n1: %v", err)
		}
		testutil.Eventually(t, 10*time.Second, "q evicts the nar n1 holds too", func() bool {
			ni := narRecord(q, shared.hashPart)
			return !q.disk.Has(sharedKey) && ni != nil && slices.Equal(ni.Holders, []string{"n1"})
		})
		if !narOnDisk(n1, sharedKey) {
			t.Error("n1 lacks the copy q relied on")
		}
		if narOnDisk(q, sharedKey) {
			t.Error("evicted file still in q's nar dir")
		}
		// The pass that evicted it stayed over quota and still kept the
		// nar nobody else holds.
		if !narOnDisk(q, lastKey) {
			t.Error("q evicted the last copy of a nar")
		}
		if ni := narRecord(n1, last.hashPart); ni == nil || !slices.Equal(ni.Holders, []string{"q"}) {
			t.Errorf("holders of the last copy = %+v, want [q]", ni)
		}
	})
}
