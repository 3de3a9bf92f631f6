package gossip

import (
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"
)

// BenchmarkGossip_JoinFourth measures how long a fourth node takes, from
// its Join call, until the three members and the new node all list each
// other alive. Each op starts a fresh fourth node (outside the timer) and
// makes it leave afterwards.
//
//	go test -run XXX -bench JoinFourth -benchtime 20x ./gossip/
func BenchmarkGossip_JoinFourth(b *testing.B) {
	for _, tc := range []struct {
		name    string
		timings Timings
	}{
		{"test-timings", TestTimings()},
		{"lan-timings", LANTimings()},
	} {
		b.Run(tc.name, func(b *testing.B) {
			cfg := TestConfig()
			cfg.SecretKey = testKey
			cfg.Timings = tc.timings
			cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
			cfg.EventBuffer = 1024
			var members []*Gossip
			for _, name := range []string{"a", "b", "c"} {
				g := startNodeConfig(b, name, cfg, Meta{})
				if len(members) > 0 {
					if _, err := g.Join([]string{members[0].LocalAddr()}); err != nil {
						b.Fatal(err)
					}
				}
				members = append(members, g)
			}
			for _, g := range members {
				awaitJoins(b, g, "a", "b", "c")
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				name := fmt.Sprintf("d%d", i)
				d := startNodeConfig(b, name, cfg, Meta{})
				b.StartTimer()
				if _, err := d.Join([]string{members[i%3].LocalAddr()}); err != nil {
					b.Fatal(err)
				}
				for _, g := range members {
					awaitJoins(b, g, name)
				}
				awaitJoins(b, d, "a", "b", "c")
				b.StopTimer()
				if err := d.Leave(time.Second); err != nil {
					b.Fatal(err)
				}
				if err := d.Close(); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
		})
	}
}

// awaitJoins reads g's events until it has seen a join of every name.
func awaitJoins(b *testing.B, g *Gossip, names ...string) {
	b.Helper()
	want := make(map[string]bool)
	for _, n := range names {
		want[n] = true
	}
	timeout := time.After(time.Minute)
	for len(want) > 0 {
		select {
		case ev := <-g.Events():
			if ev.Type == EventJoin {
				delete(want, ev.Member.Name)
			}
		case <-timeout:
			b.Fatalf("%s saw no join of %v", g.LocalName(), want)
		}
	}
}
