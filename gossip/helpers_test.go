package gossip

import (
	"bytes"
	"context"
	"log/slog"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/drvmesh/drvmesh/internal/testutil"
)

// waitFor is the timeout for a gossip condition in tests: generous, since
// the race detector and a busy machine slow everything down.
const waitFor = 15 * time.Second

// testKey is the mesh key the test nodes share.
var testKey = bytes.Repeat([]byte{0x42}, 32)

// testLogger sends slog records to t until the test ends; memberlist
// goroutines that log after that are silenced instead of panicking.
func testLogger(t testing.TB) *slog.Logger {
	w := &tWriter{t: t}
	t.Cleanup(w.stop)
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type tWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *tWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Logf("%s", bytes.TrimRight(p, "\n"))
	}
	return len(p), nil
}

func (w *tWriter) stop() {
	w.mu.Lock()
	w.done = true
	w.mu.Unlock()
}

// startNode starts a gossip node on 127.0.0.1 with test timings, closed at
// the end of the test.
func startNode(t testing.TB, name string, key []byte, meta Meta) *Gossip {
	t.Helper()
	cfg := TestConfig()
	cfg.SecretKey = key
	return startNodeConfig(t, name, cfg, meta)
}

// startNodeConfig is startNode with a given config.
func startNodeConfig(t testing.TB, name string, cfg Config, meta Meta) *Gossip {
	t.Helper()
	cfg.Name = name
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	g, err := New(cfg)
	if err != nil {
		t.Fatalf("new %s: %v", name, err)
	}
	if err := g.SetMeta(meta); err != nil {
		t.Fatalf("set meta %s: %v", name, err)
	}
	if err := g.Start(context.Background()); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(func() { _ = g.Close() })
	return g
}

// startCluster starts nodes named names, all joined through the first,
// and waits until each sees all of them alive.
func startCluster(t testing.TB, names ...string) []*Gossip {
	t.Helper()
	nodes := make([]*Gossip, len(names))
	for i, name := range names {
		nodes[i] = startNode(t, name, testKey, Meta{Systems: []string{"x86_64-linux"}, MaxJobs: i + 1, HTTP: name + ":7700"})
		if i > 0 {
			if _, err := nodes[i].Join([]string{nodes[0].LocalAddr()}); err != nil {
				t.Fatalf("join %s: %v", name, err)
			}
		}
	}
	for _, g := range nodes {
		for _, name := range names {
			waitStatus(t, g, name, StatusAlive)
		}
	}
	return nodes
}

// eventually polls cond for up to waitFor.
func eventually(t testing.TB, msg string, cond func() bool) {
	t.Helper()
	testutil.Eventually(t, waitFor, msg, cond)
}

// waitStatus waits until g lists name with status s.
func waitStatus(t testing.TB, g *Gossip, name string, s Status) {
	t.Helper()
	eventually(t, g.LocalName()+" sees "+name+" "+s.String(), func() bool {
		m, ok := g.Member(name)
		return ok && m.Status == s
	})
}

// waitMeta waits until g lists name alive with meta want.
func waitMeta(t testing.TB, g *Gossip, name string, want Meta) {
	t.Helper()
	eventually(t, g.LocalName()+" sees meta of "+name, func() bool {
		m, ok := g.Member(name)
		return ok && m.Status == StatusAlive && reflect.DeepEqual(m.Meta, want)
	})
}

// names returns the names g lists.
func names(g *Gossip) []string {
	var out []string
	for _, m := range g.Members() {
		out = append(out, m.Name)
	}
	return out
}
