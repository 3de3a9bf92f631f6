package chaos

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/drvmesh/drvmesh/internal/testbed"
	"github.com/drvmesh/drvmesh/internal/testutil"
)

var (
	seedFlag    = flag.Uint64("chaos.seed", 0, "seed of the fault and submission schedule (0: from the clock)")
	minutesFlag = flag.Float64("chaos.minutes", 0, "minutes of faults; 0 runs the short form")
	fullFlag    = flag.Bool("chaos.full", false, "assert every invariant, also those the short form only prints")
)

// knownFailing are the invariants the short form (the one CI runs)
// prints but does not assert, because the mesh does not keep them yet
// under faults; the long form (-chaos.full, scripts/chaos.sh) asserts
// them all. Each entry names what breaks it.
var knownFailing = map[string]string{
	invNotFinal: "builds stayed queued or building after a host restarted quickly; fixed at the " +
		"root (the agent hands back through the leader at start), held in the runs since, " +
		"not yet asserted here",
	invCopies: "a nar built on a host that was then killed stayed on that host alone; fixed at " +
		"the root (copies wait for the record, the leader repairs), held in the runs since, " +
		"not yet asserted here",
	invCrashed: "a host whose data disk fills up panics committing to its FSM (ENOSPC)",
	invLeftovers: "a killed host's nix-store --realise outlived it; it now gets SIGTERM when its " +
		"node dies (builder.childAttr), held in the runs since, not yet asserted here",
	invHookTwice: "a leader killed between running a hook and committing its acknowledgement " +
		"leaves it to the next leader, which runs it again",
}

// The shape of a run.
const (
	hosts       = 5
	minCopies   = 2
	perBatch    = 25 // derivations per batch, plus a root
	shortFaults = 75 * time.Second
	shortGrace  = 100 * time.Second
	longGrace   = 5 * time.Minute
	termLimit   = 30 * time.Second
)

// plan is what a seed and a length decide.
type plan struct {
	seed    uint64
	faults  time.Duration // how long faults run
	grace   time.Duration // how long builds may take to end after
	batches int           // batches of perBatch+1 derivations
	full    bool          // assert every invariant
}

func newPlan() plan {
	p := plan{seed: *seedFlag, faults: shortFaults, grace: shortGrace, batches: 8, full: *fullFlag}
	if p.seed == 0 {
		p.seed = uint64(time.Now().UnixNano()) % 1_000_000_000
	}
	if *minutesFlag > 0 {
		p.faults = time.Duration(*minutesFlag * float64(time.Minute))
		p.grace = longGrace
		p.batches = max(8, int(*minutesFlag*4))
	}
	return p
}

// TestChaos runs the suite; see the package documentation.
func TestChaos(t *testing.T) {
	if os.Getenv("CI") == "" && os.Getenv("DRVMESH_CHAOS") == "" {
		t.Skip("the chaos suite runs under CI or from scripts/chaos.sh (DRVMESH_CHAOS=1)")
	}
	if os.Geteuid() != 0 {
		t.Skip("the chaos suite needs root for the testbed")
	}
	testutil.RequireNix(t)
	p := newPlan()
	fmt.Printf("chaos seed: %d (replay: scripts/chaos.sh --seed %d%s)\n", p.seed, p.seed, replayLength(p))
	t.Logf("chaos seed %d: %v of faults, %d batches of %d derivations, grace %v, assert all: %v",
		p.seed, p.faults, p.batches, perBatch+1, p.grace, p.full)

	hookDir, hookLog := installHooks(t)
	tb := testbed.New(t, testbed.Config{
		Hosts: hosts, Builder: "nix", RequestTimeout: 5 * time.Second,
		NodeFlags: []string{"--max-jobs", "2", "--min-copies", fmt.Sprint(minCopies), "--retries", "5", "--hooks", hookDir},
	})
	r := newRun(t, tb, p, hookLog)
	r.instantiate()

	ctx, cancel := context.WithTimeout(context.Background(), p.faults)
	defer cancel()
	inj := newInjector(r, rand.New(rand.NewPCG(p.seed, 1)))
	done := make(chan struct{})
	go func() {
		defer close(done)
		inj.run(ctx)
	}()
	r.submitAll(ctx, rand.New(rand.NewPCG(p.seed, 2)))
	<-ctx.Done()
	<-done
	t.Logf("faults injected: %v", inj.counts)
	for _, line := range inj.schedule {
		t.Log(line)
	}
	inj.restartCrashed()
	r.recover()

	figs := r.figures(inj)
	figs.print(t, p, inj)
	figs.assert(t, p.full)
}

func replayLength(p plan) string {
	if *minutesFlag > 0 {
		return fmt.Sprintf(" --minutes %g", *minutesFlag)
	}
	return " --short"
}

// installHooks makes a hooks dir whose build-succeeded hook appends the
// event and build id to a log outside every host's data dir.
func installHooks(t *testing.T) (dir, log string) {
	t.Helper()
	base := t.TempDir()
	dir = filepath.Join(base, "hooks")
	log = filepath.Join(base, "hooks.log")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	script := fmt.Sprintf("#!/bin/sh\necho \"$DRVMESH_EVENT $DRVMESH_BUILD_ID\" >>%s\n", log)
	if err := os.WriteFile(filepath.Join(dir, "build-succeeded"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(log, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, log
}
