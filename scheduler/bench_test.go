package scheduler_test

import (
	"runtime"
	"sync"
	"syscall"
	"testing"

	"github.com/drvmesh/drvmesh/scheduler"
	"github.com/drvmesh/drvmesh/scheduler/schedtest"
)

// The farm of the performance goals: 100,000 queued builds, 1,000 nodes
// with every slot free.
var (
	farmOnce sync.Once
	bigFarm  *schedtest.Farm
)

func farm100k(b *testing.B) *schedtest.Farm {
	b.Helper()
	farmOnce.Do(func() {
		bigFarm = schedtest.Generate(schedtest.GenConfig{Builds: 100_000, Nodes: 1000, Seed: 1})
	})
	return bigFarm
}

var strategies = []scheduler.Strategy{scheduler.StrategyDerivationOrdered, scheduler.StrategyBasic}

func newPlanner(b *testing.B, f *schedtest.Farm, s scheduler.Strategy) *scheduler.Planner {
	b.Helper()
	cfg := scheduler.DefaultConfig()
	cfg.Strategy = s
	p, err := scheduler.NewPlanner(cfg)
	if err != nil {
		b.Fatal(err)
	}
	if err := p.Reset(f.State); err != nil {
		b.Fatal(err)
	}
	return p
}

// cpuTime is the process's user+system CPU time. The machine is shared, so
// benchmarks report CPU per op next to wall-clock ns/op; it includes the
// garbage collector's work.
func cpuTime() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

func reportCPU(b *testing.B, start int64) {
	b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op")
}

func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkPlanner_FullRound rebuilds a Planner from the whole State and
// plans once: "cold" on a new Planner, "warm" on one that already held the
// same nodes (their nar index is kept when unchanged). It also reports the
// planner's retained heap and the number of assignments per round.
func BenchmarkPlanner_FullRound(b *testing.B) {
	f := farm100k(b)
	for _, s := range strategies {
		for _, warm := range []bool{false, true} {
			name := string(s) + "/cold"
			if warm {
				name = string(s) + "/warm"
			}
			b.Run(name, func(b *testing.B) {
				before := heapInUse()
				p := newPlanner(b, f, s)
				mb := float64(heapInUse()-before) / (1 << 20)
				n := 0
				b.ResetTimer()
				start := cpuTime()
				for b.Loop() {
					if !warm {
						p = newPlanner(b, f, s)
					} else if err := p.Reset(f.State); err != nil {
						b.Fatal(err)
					}
					n = len(p.Plan(f.Now).Assignments)
				}
				reportCPU(b, start)
				b.ReportMetric(float64(n), "assigned")
				b.ReportMetric(mb, "planner-MB")
			})
		}
	}
}

// BenchmarkPlanner_Phases splits a full round into its parts: Reset on a
// new Planner (cold), Reset on one that held the same state (warm), and
// Plan alone on a Planner fresh from Reset.
func BenchmarkPlanner_Phases(b *testing.B) {
	f := farm100k(b)
	for _, s := range strategies {
		cfg := scheduler.DefaultConfig()
		cfg.Strategy = s
		b.Run(string(s)+"/reset-cold", func(b *testing.B) {
			start := cpuTime()
			for b.Loop() {
				p, err := scheduler.NewPlanner(cfg)
				if err != nil {
					b.Fatal(err)
				}
				if err := p.Reset(f.State); err != nil {
					b.Fatal(err)
				}
			}
			reportCPU(b, start)
		})
		b.Run(string(s)+"/reset-warm", func(b *testing.B) {
			p := newPlanner(b, f, s)
			start := cpuTime()
			for b.Loop() {
				if err := p.Reset(f.State); err != nil {
					b.Fatal(err)
				}
			}
			reportCPU(b, start)
		})
		b.Run(string(s)+"/plan", func(b *testing.B) {
			p := newPlanner(b, f, s)
			start := cpuTime()
			n := 0
			for b.Loop() {
				n = len(p.Plan(f.Now).Assignments)
			}
			reportCPU(b, start)
			b.ReportMetric(float64(n), "assigned")
		})
	}
}

// BenchmarkPlanner_Prepare is the one-off cost, after a Reset, of the
// indexes by id and by missing input that Reset leaves for first use.
func BenchmarkPlanner_Prepare(b *testing.B) {
	f := farm100k(b)
	for _, s := range strategies {
		b.Run(string(s), func(b *testing.B) {
			before := heapInUse()
			p := newPlanner(b, f, s)
			p.Prepare()
			mb := float64(heapInUse()-before) / (1 << 20)
			start := cpuTime()
			for b.Loop() {
				b.StopTimer()
				if err := p.Reset(f.State); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				p.Prepare()
			}
			reportCPU(b, start)
			b.ReportMetric(mb, "prepared-planner-MB")
		})
	}
}

// BenchmarkSchedule is the reference function on the same farm, for
// comparison only.
func BenchmarkSchedule(b *testing.B) {
	f := farm100k(b)
	for _, s := range strategies {
		b.Run(string(s), func(b *testing.B) {
			cfg := scheduler.DefaultConfig()
			cfg.Strategy = s
			start := cpuTime()
			for b.Loop() {
				scheduler.Schedule(f.State, cfg, f.Now)
			}
			reportCPU(b, start)
		})
	}
}

// steady is a planner after its first full round has been committed: the
// assigned builds run, and free slots remain only where no ready build
// fits.
type steady struct {
	p       *scheduler.Planner
	free    map[string]int
	load    map[string]float64
	running []running
}

type running struct {
	b    *scheduler.Build
	node string
}

func newSteady(b *testing.B, f *schedtest.Farm, s scheduler.Strategy) *steady {
	b.Helper()
	st := &steady{p: newPlanner(b, f, s), free: map[string]int{}, load: map[string]float64{}}
	byID := map[string]*scheduler.Build{}
	for _, x := range f.State.BuildList {
		byID[x.ID] = x
	}
	for _, n := range f.State.NodeList {
		st.free[n.Name] = n.FreeSlots
		st.load[n.Name] = n.Load
	}
	st.apply(b, st.p.Plan(f.Now), byID)
	return st
}

func (st *steady) apply(b *testing.B, plan scheduler.Plan, byID map[string]*scheduler.Build) {
	for _, a := range plan.Assignments {
		if byID != nil {
			st.running = append(st.running, running{b: byID[a.Build], node: a.Node})
		}
		st.free[a.Node]--
		if err := st.p.Remove(a.Build); err != nil {
			b.Fatal(err)
		}
		if err := st.p.SetCapacity(a.Node, st.free[a.Node], st.load[a.Node]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPlanner_IncrementalFinish: one running build succeeds (its
// node gets the slot back and holds the output, its dependents may become
// ready), then one planning round, whose assignments are committed.
func BenchmarkPlanner_IncrementalFinish(b *testing.B) {
	f := farm100k(b)
	byID := map[string]*scheduler.Build{}
	for _, x := range f.State.BuildList {
		byID[x.ID] = x
	}
	for _, s := range strategies {
		b.Run(string(s), func(b *testing.B) {
			st := newSteady(b, f, s)
			assigned, released := 0, 0
			b.ResetTimer()
			start := cpuTime()
			for b.Loop() {
				if len(st.running) == 0 {
					b.StopTimer()
					st = newSteady(b, f, s)
					b.StartTimer()
				}
				r := st.running[0]
				st.running = st.running[1:]
				st.free[r.node]++
				if err := st.p.SetCapacity(r.node, st.free[r.node], st.load[r.node]); err != nil {
					b.Fatal(err)
				}
				if err := st.p.AddNar(r.node, schedtest.OutPath(r.b.Drv)); err != nil {
					b.Fatal(err)
				}
				released += st.p.MarkAvailable(r.b.Drv)
				plan := st.p.Plan(f.Now)
				assigned += len(plan.Assignments)
				st.apply(b, plan, byID)
			}
			reportCPU(b, start)
			b.ReportMetric(float64(assigned)/float64(b.N), "assigned/op")
			b.ReportMetric(float64(released)/float64(b.N), "released/op")
		})
	}
}

// BenchmarkPlanner_IncrementalFreeSlot: one node frees a slot, one
// planning round; the slot is then taken back so every iteration sees the
// same state.
func BenchmarkPlanner_IncrementalFreeSlot(b *testing.B) {
	f := farm100k(b)
	for _, s := range strategies {
		b.Run(string(s), func(b *testing.B) {
			st := newSteady(b, f, s)
			nodes := f.State.NodeList
			assigned, i := 0, 0
			b.ResetTimer()
			start := cpuTime()
			for b.Loop() {
				n := nodes[i%len(nodes)].Name
				i++
				if err := st.p.SetCapacity(n, st.free[n]+1, st.load[n]); err != nil {
					b.Fatal(err)
				}
				assigned += len(st.p.Plan(f.Now).Assignments)
				if err := st.p.SetCapacity(n, st.free[n], st.load[n]); err != nil {
					b.Fatal(err)
				}
			}
			reportCPU(b, start)
			b.ReportMetric(float64(assigned)/float64(b.N), "assigned/op")
		})
	}
}
