package schedtest

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/drvmesh/drvmesh/scheduler"
)

// GenConfig sizes a generated farm.
type GenConfig struct {
	// Builds queued; Built more derivations are already built, their
	// outputs held by nodes (default Builds/5).
	Builds, Built int
	// Nodes in the farm.
	Nodes int
	// Seed makes the farm reproducible.
	Seed uint64
	// Busy is the fraction of each node's slots already in use (0: every
	// slot free, 1: none free).
	Busy float64
}

// OutPath is the output path Generate gives the derivation drv.
func OutPath(drv string) string { return strings.TrimSuffix(drv, ".drv") }

// Farm is a generated queue and set of nodes.
type Farm struct {
	State *scheduler.SliceState
	// Now is the time the farm was generated for: every build was
	// submitted in the 48 hours before it.
	Now time.Time
	// MaxJobs of each node, by name.
	MaxJobs map[string]int
}

// Systems and their share of derivations in generated queues.
var systemShare = []struct {
	system string
	share  float64
}{
	{"x86_64-linux", 0.62}, {"aarch64-linux", 0.15}, {"aarch64-darwin", 0.08},
	{"x86_64-darwin", 0.07}, {"i686-linux", 0.04}, {"armv7l-linux", 0.02},
	{"riscv64-linux", 0.02},
}

// Generate returns a layered derivation graph: every queued build depends
// on 1–20 earlier derivations of its system, half of them drawn by a Zipf
// law (a few foundation packages are inputs of nearly everything, giving a
// power-law fan-in) and half among the recent ones (the layer below).
// About 5% of builds need big-parallel, 1.5% kvm and nixos-test; 1% are
// deferred; 2% already failed on one node. Nodes mix the seven systems
// (x86_64-linux dominant), offer 2–16 slots, and hold each built output on
// two nodes plus the popular ones on a fifth of their system's nodes.
func Generate(cfg GenConfig) *Farm {
	if cfg.Built == 0 {
		cfg.Built = cfg.Builds / 5
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15))
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	total := cfg.Built + cfg.Builds

	pickSystem := func() string {
		x := rng.Float64()
		for _, s := range systemShare {
			if x < s.share {
				return s.system
			}
			x -= s.share
		}
		return systemShare[0].system
	}
	type drv struct {
		path, out string
		system    string
		size      int64
		rank      int // position within its system
	}
	drvs := make([]drv, total)
	bySystem := map[string][]int{}
	for i := range drvs {
		sys := pickSystem()
		h := fmt.Sprintf("%032x", rng.Uint64()^uint64(i)<<20)[:32]
		drvs[i] = drv{
			path:   "/nix/store/" + h + "-pkg" + fmt.Sprint(i) + ".drv",
			out:    "/nix/store/" + h + "-pkg" + fmt.Sprint(i),
			system: sys,
			size:   int64(min(math.Exp(rng.NormFloat64()*1.8+13), 4e9)),
			rank:   len(bySystem[sys]),
		}
		bySystem[sys] = append(bySystem[sys], i)
	}

	nodes := genNodes(rng, cfg.Nodes)
	farm := &Farm{Now: now, MaxJobs: map[string]int{}}
	nodesBySystem := map[string][]*scheduler.Node{}
	for _, n := range nodes {
		for _, s := range n.Systems {
			nodesBySystem[s] = append(nodesBySystem[s], n)
		}
	}
	for i := range cfg.Built {
		d := drvs[i]
		hs := nodesBySystem[d.system]
		if len(hs) == 0 {
			continue
		}
		copies := 2
		if d.rank < len(bySystem[d.system])/100 {
			copies += len(hs) / 5
		}
		for range copies {
			n := hs[rng.IntN(len(hs))]
			if !slices.Contains(n.Nars, d.out) {
				n.Nars = append(n.Nars, d.out)
			}
		}
	}

	state := &scheduler.SliceState{NodeList: nodes}
	for i := cfg.Built; i < total; i++ {
		d := drvs[i]
		peers := bySystem[d.system]
		mine := d.rank // earlier derivations of the system are peers[:mine]
		b := &scheduler.Build{
			ID:        fmt.Sprintf("b%06d", i-cfg.Built),
			Drv:       d.path,
			System:    d.system,
			Priority:  genPriority(rng),
			Submitted: now.Add(-time.Duration(rng.Int64N(int64(48 * time.Hour)))),
		}
		if mine > 0 {
			k := max(1, min(int(math.Exp(rng.Float64()*math.Log(21))), 20, mine))
			zipf := rand.NewZipf(rng, 1.3, 1, uint64(mine-1))
			seen := map[int]bool{}
			for len(seen) < k {
				var j int
				if rng.IntN(2) == 0 {
					j = peers[zipf.Uint64()]
				} else {
					j = peers[max(0, mine-1-rng.IntN(min(mine, 2000)))]
				}
				if seen[j] {
					if len(seen) >= mine {
						break
					}
					continue
				}
				seen[j] = true
				b.Inputs = append(b.Inputs, scheduler.Input{Drv: drvs[j].path, Available: j < cfg.Built})
				b.InputNars = append(b.InputNars, scheduler.Nar{Path: drvs[j].out, Size: drvs[j].size})
			}
		}
		switch x := rng.Float64(); {
		case x < 0.05:
			b.Features = []string{"big-parallel"}
		case x < 0.065 && d.system == "x86_64-linux":
			b.Features = []string{"kvm", "nixos-test"}
		}
		if rng.Float64() < 0.01 {
			b.DeferUntil = now.Add(time.Duration(rng.Int64N(int64(time.Hour))))
		}
		if rng.Float64() < 0.02 && len(nodes) > 0 {
			b.FailedOn = []string{nodes[rng.IntN(len(nodes))].Name}
		}
		state.BuildList = append(state.BuildList, b)
	}
	for _, n := range nodes {
		farm.MaxJobs[n.Name] = n.FreeSlots
	}
	for _, n := range nodes {
		used := int(math.Round(float64(n.FreeSlots) * cfg.Busy))
		n.FreeSlots -= used
		n.Load = math.Round(float64(used)/float64(farm.MaxJobs[n.Name])*100) / 100
	}
	farm.State = state
	return farm
}

func genPriority(rng *rand.Rand) int {
	switch x := rng.Float64(); {
	case x < 0.01:
		return 10
	case x < 0.11:
		return 1 + rng.IntN(5)
	case x < 0.13:
		return -1
	}
	return 0
}

// genNodes makes n nodes with every slot free (FreeSlots = max jobs).
func genNodes(rng *rand.Rand, n int) []*scheduler.Node {
	nodes := make([]*scheduler.Node, n)
	for i := range nodes {
		node := &scheduler.Node{
			Name:      fmt.Sprintf("node-%04d", i),
			FreeSlots: []int{2, 4, 8, 16}[rng.IntN(4)],
		}
		switch x := rng.Float64(); {
		case x < 0.60:
			node.Systems = []string{"x86_64-linux"}
			if rng.IntN(2) == 0 {
				node.Systems = append(node.Systems, "i686-linux")
			}
			if rng.Float64() < 0.25 {
				node.Features = []string{"kvm", "nixos-test"}
			}
		case x < 0.78:
			node.Systems = []string{"aarch64-linux"}
			if rng.IntN(3) == 0 {
				node.Systems = append(node.Systems, "armv7l-linux")
			}
		case x < 0.86:
			node.Systems = []string{"x86_64-darwin"}
		case x < 0.95:
			node.Systems = []string{"aarch64-darwin", "x86_64-darwin"}
		default:
			node.Systems = []string{"riscv64-linux"}
		}
		if rng.Float64() < 0.25 {
			node.Features = append(node.Features, "big-parallel")
		}
		nodes[i] = node
	}
	return nodes
}
