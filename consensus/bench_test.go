package consensus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// BenchmarkSubmit measures builds accepted per second by a 3-node cluster
// on loopback: concurrent appliers, 1000 builds per raft entry.
//
//	go test -run '^$' -bench 'BenchmarkSubmit$' -benchtime 200x ./consensus/
func BenchmarkSubmit(b *testing.B) { benchSubmit(b, false) }

// BenchmarkSubmit_Authorized is BenchmarkSubmit with the leader's
// authorization (FSM.Authorize, a user through node n1) before each
// apply, as the node runs it.
func BenchmarkSubmit_Authorized(b *testing.B) { benchSubmit(b, true) }

func benchSubmit(b *testing.B, authorize bool) {
	const perApply = 1000
	nodes := cluster(b, 3, func(c *Config) { // production timings
		c.HeartbeatTimeout, c.ElectionTimeout, c.LeaderLeaseTimeout, c.CommitTimeout = 0, 0, 0, 0
		if os.Getenv("DRVMESH_BENCH_LOG") != "" {
			c.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
		}
	})
	leader := leaderOf(b, nodes)
	if authorize {
		if _, err := leader.Apply(context.Background(), &PutNode{Node: Node{Name: "n1"}}); err != nil {
			b.Fatal(err)
		}
	}
	var seq, lost atomic.Int64
	var cur atomic.Pointer[Raft]
	cur.Store(leader)
	b.SetParallelism(2) // 2 × GOMAXPROCS appliers
	b.ResetTimer()
	start, cpu0 := time.Now(), cpuTime()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			n := seq.Add(1)
			cmd := &SubmitBuilds{Builds: make([]Build, perApply)}
			for i := range cmd.Builds {
				cmd.Builds[i] = Build{
					Derivation: fmt.Sprintf("/nix/store/%016d%016d-pkg-%d.drv", n, i, i),
					System:     "x86_64-linux", Tags: map[string]string{"job": "bench"},
				}
			}
			for { // follow leadership changes, as a client does
				if authorize {
					if err := cur.Load().State().Authorize(cmd, UserPrincipal("n1")); err != nil {
						b.Error(err)
						return
					}
				}
				_, err := cur.Load().Apply(context.Background(), cmd)
				if err == nil {
					break
				}
				if !errors.Is(err, ErrNotLeader) && !errors.Is(err, raft.ErrLeadershipLost) {
					b.Error(err)
					return
				}
				lost.Add(1)
				cur.Store(leaderOf(b, nodes))
			}
		}
	})
	el, cpu := time.Since(start), cpuTime()-cpu0
	b.ReportMetric(float64(seq.Load()*perApply)/el.Seconds(), "builds/s")
	b.ReportMetric(float64(seq.Load()*perApply)/cpu.Seconds(), "builds/cpu-s")
	b.ReportMetric(float64(lost.Load()), "retries")
}

// cpuTime is the user+system CPU time of this process: with other work on
// the machine, builds per CPU second is steadier than builds per second.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func envInt(t *testing.T, name string) int {
	v := os.Getenv(name)
	if v == "" {
		t.Skipf("set %s to run", name)
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return n
}

// TestFSM_Scale loads DRVMESH_SCALE_BUILDS builds and DRVMESH_SCALE_NARS
// nar records through ApplyBatch (1000 per entry, 16 entries per batch,
// as raft delivers them) and reports state size, snapshot size and
// snapshot/restore times. It is skipped unless the variables are set:
//
//	DRVMESH_SCALE_BUILDS=1000000 DRVMESH_SCALE_NARS=5000000 \
//	  go test -run TestFSM_Scale -v -timeout 1h ./consensus/
func TestFSM_Scale(t *testing.T) {
	nBuilds := envInt(t, "DRVMESH_SCALE_BUILDS")
	nNars, _ := strconv.Atoi(os.Getenv("DRVMESH_SCALE_NARS"))
	f := newTestFSM(t)
	dbPath := filepath.Join(f.dir, stateFile)
	size := func() int64 {
		st, err := os.Stat(dbPath)
		if err != nil {
			t.Fatal(err)
		}
		return st.Size()
	}
	load := func(what string, n int, mk func(i int) Command) time.Duration {
		start := time.Now()
		var batch []*raft.Log
		flush := func() {
			for _, r := range f.ApplyBatch(batch) {
				if err, ok := r.(error); ok {
					t.Fatal(err)
				}
			}
			batch = batch[:0]
		}
		for i := 0; i < n; i += 1000 {
			batch = append(batch, f.entry(mk(i), t0.Add(time.Duration(i)*time.Millisecond)))
			if len(batch) == 16 {
				flush()
			}
		}
		flush()
		el := time.Since(start)
		t.Logf("%s: %d in %v (%.0f/s)", what, n, el.Round(time.Millisecond), float64(n)/el.Seconds())
		return el
	}
	load("builds", nBuilds, func(i int) Command {
		c := &SubmitBuilds{}
		for j := i; j < i+1000 && j < nBuilds; j++ {
			c.Builds = append(c.Builds, Build{
				Derivation: fmt.Sprintf("/nix/store/%032d-hello-2.12.%d.drv", j, j%7),
				System:     "x86_64-linux", Priority: j % 3,
				Tags: map[string]string{"jobset": "nixpkgs/trunk"},
			})
		}
		return c
	})
	afterBuilds := size()
	t.Logf("state file after builds: %d bytes, %.0f bytes/build", afterBuilds, float64(afterBuilds)/float64(nBuilds))
	if nNars > 0 {
		load("nars", nNars, func(i int) Command {
			c := &PutNarInfos{Holder: "node-a"}
			for j := i; j < i+1000 && j < nNars; j++ {
				c.NarInfos = append(c.NarInfos, NarInfo{
					StorePath: fmt.Sprintf("/nix/store/%032d-lib%d-1.0", j, j),
					NarHash:   fmt.Sprintf("sha256:%052d", j), NarSize: int64(j*37 + 1000),
					References: []string{
						fmt.Sprintf("%032d-glibc-2.39", j%100), fmt.Sprintf("%032d-lib%d-1.0", j, j),
						fmt.Sprintf("%032d-zlib-1.3", j%1000),
					},
					Deriver: fmt.Sprintf("%032d-lib%d-1.0.drv", j+1, j),
					Sigs:    []string{fmt.Sprintf("mesh-1:%088d", j)},
					Files:   []NarFile{{Compression: "zstd", FileHash: fmt.Sprintf("sha256:%052d", j+1), FileSize: int64(j*11 + 500)}},
				})
			}
			return c
		})
		t.Logf("state file after nars: %d bytes, %.0f bytes/nar", size(), float64(size()-afterBuilds)/float64(nNars))
	}

	start := time.Now()
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sinkPath := filepath.Join(t.TempDir(), "snap")
	sf, err := os.Create(sinkPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := snap.Persist(&fileSink{sf}); err != nil {
		t.Fatal(err)
	}
	snap.Release()
	st, _ := os.Stat(sinkPath)
	t.Logf("snapshot: %d bytes in %v", st.Size(), time.Since(start).Round(time.Millisecond))

	g := newTestFSM(t)
	rf, err := os.Open(sinkPath)
	if err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	if err := g.Restore(rf); err != nil {
		t.Fatal(err)
	}
	t.Logf("restore: %v", time.Since(start).Round(time.Millisecond))
	c, _ := g.Counts()
	if c[StateQueued] != nBuilds {
		t.Fatalf("restored %d queued builds, want %d", c[StateQueued], nBuilds)
	}
	start = time.Now()
	bs, err := g.ListBuilds(BuildFilter{State: StateQueued, Limit: 100})
	if err != nil || len(bs) != min(100, nBuilds) {
		t.Fatalf("list: %d, %v", len(bs), err)
	}
	t.Logf("list newest 100 queued: %v", time.Since(start))
}

type fileSink struct{ *os.File }

func (s *fileSink) ID() string    { return "file" }
func (s *fileSink) Cancel() error { return s.File.Close() }

// BenchmarkFSM_ApplyBatch measures one replica's apply rate: SubmitBuilds
// entries of 1000 builds, 16 entries per ApplyBatch (as raft delivers
// them under load), into a fresh state file.
//
//	go test -run '^$' -bench BenchmarkFSM_ApplyBatch -benchtime 50x ./consensus/
func BenchmarkFSM_ApplyBatch(b *testing.B) {
	const perApply, perBatch = 1000, 16
	f, err := NewFSM(b.TempDir(), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	var index uint64
	mk := func() *raft.Log {
		index++
		cmd := &SubmitBuilds{Builds: make([]Build, perApply)}
		for i := range cmd.Builds {
			cmd.Builds[i] = Build{
				Derivation: fmt.Sprintf("/nix/store/%016d%016d-pkg-%d.drv", index, i, i),
				System:     "x86_64-linux", Tags: map[string]string{"job": "bench"},
			}
		}
		data, err := EncodeCommand(cmd, t0.Add(time.Duration(index)*time.Millisecond))
		if err != nil {
			b.Fatal(err)
		}
		return &raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: data}
	}
	b.ResetTimer()
	var cpu time.Duration
	for range b.N {
		b.StopTimer()
		batch := make([]*raft.Log, perBatch)
		for i := range batch {
			batch[i] = mk()
		}
		b.StartTimer()
		cpu0 := cpuTime()
		for _, r := range f.ApplyBatch(batch) {
			if err, ok := r.(error); ok {
				b.Fatal(err)
			}
		}
		cpu += cpuTime() - cpu0
	}
	b.ReportMetric(float64(b.N*perApply*perBatch)/b.Elapsed().Seconds(), "builds/s")
	b.ReportMetric(float64(b.N*perApply*perBatch)/cpu.Seconds(), "builds/cpu-s")
}
