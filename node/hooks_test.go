package node

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/drvmesh/drvmesh/api"
	"github.com/drvmesh/drvmesh/consensus"
	"github.com/drvmesh/drvmesh/internal/testutil"
)

// hookScript records each event as one line "<event> <build id> <node>
// <derivation>" in DIR/events, under a lock, and keeps the build JSON it
// got on stdin. DIR/delay slows hooks down; while DIR/fail-failed exists,
// the build-failed hook fails the first two times (counted in
// DIR/failed-count).
const hookScript = `#!/bin/sh
set -e
DIR=%s
json=$(cat)
if [ -e "$DIR/delay" ]; then sleep "$(cat "$DIR/delay")"; fi
exec 9>>"$DIR/events.lock"
flock 9
if [ "$DRVMESH_EVENT" = build-failed ] && [ -e "$DIR/fail-failed" ]; then
	c=$(cat "$DIR/failed-count" 2>/dev/null || echo 0)
	c=$((c+1))
	echo $c > "$DIR/failed-count"
	if [ $c -le 2 ]; then echo "failing on purpose, try $c" >&2; exit 1; fi
fi
printf '%%s\n' "$json" > "$DIR/stdin-$DRVMESH_EVENT-$DRVMESH_BUILD_ID"
echo "$DRVMESH_EVENT $DRVMESH_BUILD_ID $DRVMESH_NODE $DRVMESH_DERIVATION" >> "$DIR/events"
`

// hookLog reads the shared event file.
type hookLog struct {
	t   *testing.T
	dir string
}

type hookLine struct{ event, build, node, drv string }

func (h hookLog) lines() []hookLine {
	b, err := os.ReadFile(filepath.Join(h.dir, "events"))
	if err != nil && !os.IsNotExist(err) {
		h.t.Fatal(err)
	}
	var out []hookLine
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(l)
		if len(f) == 4 {
			out = append(out, hookLine{f[0], f[1], f[2], f[3]})
		} else if l != "" {
			h.t.Fatalf("malformed hook line %q", l)
		}
	}
	return out
}

// count is how often event ran for build.
func (h hookLog) count(event, build string) int {
	c := 0
	for _, l := range h.lines() {
		if l.event == event && l.build == build {
			c++
		}
	}
	return c
}

func (h hookLog) set(name, content string) {
	h.t.Helper()
	if err := os.WriteFile(filepath.Join(h.dir, name), []byte(content), 0o644); err != nil {
		h.t.Fatal(err)
	}
}

// pendingEvents is the number of events the mesh has not acknowledged.
func pendingEvents(n *Node) int {
	evs, err := n.raft.State().PendingEvents(0)
	if err != nil {
		return -1
	}
	return len(evs)
}

// stopGracefully stops a node gracefully and forgets it.
func (m *testMesh) stopGracefully(name string) {
	m.mu.Lock()
	n := m.nodes[name]
	delete(m.nodes, name)
	m.mu.Unlock()
	if err := n.Close(); err != nil {
		m.t.Fatalf("close %s: %v", name, err)
	}
}

func applyVia(t *testing.T, n *Node, cmd consensus.Command) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := n.apply(ctx, cmd); err != nil {
		t.Fatalf("apply %T through %s: %v", cmd, n.Name(), err)
	}
}

func TestNode_Hooks(t *testing.T) {
	testutil.RequireTool(t, "flock")
	m := newTestMesh(t)
	shared := t.TempDir()
	h := hookLog{t: t, dir: shared}
	events := []string{
		consensus.EventBuildSubmitted, consensus.EventBuildStarted, consensus.EventBuildSucceeded,
		consensus.EventBuildFailed, consensus.EventBuildCanceled, consensus.EventBuildMissingInputs,
	}
	withHooks := func(c *Config) {
		// Hooks fork processes: slower raft timings keep a loaded machine
		// from losing its leader now and then, which would make the
		// at-least-once case (a hook whose leader lost office) likely.
		c.Scale = 4
		c.HooksDir = filepath.Join(m.base, c.Name+"-hooks")
		if err := os.MkdirAll(c.HooksDir, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, ev := range events {
			if err := os.WriteFile(filepath.Join(c.HooksDir, ev), fmt.Appendf(nil, hookScript, shared), 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	m.bootstrap("h1", withHooks)
	m.join("h2", withHooks)
	m.join("h3", withHooks)
	testutil.Eventually(t, 20*time.Second, "3 voters", func() bool { return len(m.node("h1").api.Status().Voters) == 3 })
	allAcked := func(t *testing.T) {
		t.Helper()
		testutil.Eventually(t, 30*time.Second, "every hook event acknowledged", func() bool {
			l := m.waitLeader()
			return pendingEvents(l) == 0
		})
	}

	t.Run("each event runs once across the mesh", func(t *testing.T) {
		var ids []string
		for i, name := range []string{"h1", "h2", "h3", "h1"} {
			ids = append(ids, submitVia(t, m.node(name), 100+i))
		}
		// ids[0]: started, then missing inputs; ids[1]: started, then
		// canceled; ids[2]: canceled while queued; ids[3]: only submitted.
		for _, id := range ids[:2] {
			applyVia(t, m.waitLeader(), &consensus.AssignBuilds{Assignments: []consensus.Assignment{{BuildID: id, Node: "h2"}}})
			applyVia(t, m.node("h2"), &consensus.StartBuild{ID: id, Node: "h2"})
		}
		applyVia(t, m.node("h2"), &consensus.FinishBuild{ID: ids[0], Node: "h2", MissingInputs: []string{"/nix/store/" + strings.Repeat("a", 32) + "-absent"}})
		applyVia(t, m.node("h1"), &consensus.CancelBuilds{IDs: ids[1:3]})
		want := map[[2]string]int{}
		for _, id := range ids {
			want[[2]string{consensus.EventBuildSubmitted, id}] = 1
		}
		want[[2]string{consensus.EventBuildStarted, ids[0]}] = 1
		want[[2]string{consensus.EventBuildStarted, ids[1]}] = 1
		want[[2]string{consensus.EventBuildMissingInputs, ids[0]}] = 1
		want[[2]string{consensus.EventBuildCanceled, ids[1]}] = 1
		want[[2]string{consensus.EventBuildCanceled, ids[2]}] = 1
		allAcked(t)
		got := map[[2]string]int{}
		for _, l := range h.lines() {
			got[[2]string{l.event, l.build}]++
			if l.drv != fakeDrv(100+slices.Index(ids, l.build)) {
				t.Errorf("hook %s of %s saw derivation %s", l.event, l.build, l.drv)
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("hook runs (event, build) → count:\n got %v\nwant %v", got, want)
		}
		// The hook got the build JSON on stdin.
		raw, err := os.ReadFile(filepath.Join(shared, "stdin-"+consensus.EventBuildCanceled+"-"+ids[1]))
		if err != nil {
			t.Fatal(err)
		}
		if b, err := decodeStrict[api.Build](raw); err != nil || b.ID != ids[1] || b.State != api.StateCanceled || b.FinishedAt == nil {
			t.Errorf("stdin of the canceled hook = %s (%v)", raw, err)
		}
	})

	t.Run("graceful leader change with events pending", func(t *testing.T) {
		h.set("delay", "0.1")
		defer h.set("delay", "0")
		leader := m.waitLeader()
		before := len(h.lines())
		var builds []consensus.Build
		for i := range 20 {
			builds = append(builds, consensus.Build{ID: consensus.NewBuildID(time.Now()), Derivation: fakeDrv(200 + i), System: "x86_64-linux", State: consensus.StateQueued})
		}
		applyVia(t, leader, &consensus.SubmitBuilds{Builds: builds})
		testutil.Eventually(t, 20*time.Second, "the leader runs the first hooks", func() bool { return len(h.lines()) >= before+2 })
		m.stopGracefully(leader.Name())
		next := m.waitLeader()
		if next.Name() == leader.Name() {
			t.Fatal("the closed node still leads")
		}
		allAcked(t)
		ran := map[string]int{}
		for _, b := range builds {
			if c := h.count(consensus.EventBuildSubmitted, b.ID); c != 1 {
				t.Errorf("build-submitted of %s ran %d times, want 1", b.ID, c)
			}
		}
		for _, l := range h.lines()[before:] {
			ran[l.node]++
		}
		if ran[leader.Name()] == 0 || ran[leader.Name()] == len(builds) {
			t.Errorf("hooks per node %v: want the old leader %s to have run some, the new one the rest", ran, leader.Name())
		}
	})

	t.Run("failing hook is retried without blocking", func(t *testing.T) {
		h.set("fail-failed", "")
		leader := m.waitLeader()
		id := submitVia(t, leader, 300)
		applyVia(t, leader, &consensus.AssignBuilds{Assignments: []consensus.Assignment{{BuildID: id, Node: leader.Name()}}})
		applyVia(t, leader, &consensus.FinishBuild{ID: id, Node: leader.Name(), Error: "builder said no"})
		testutil.Eventually(t, 20*time.Second, "the failing hook ran once", func() bool {
			b, _ := os.ReadFile(filepath.Join(shared, "failed-count"))
			return strings.TrimSpace(string(b)) != ""
		})
		// The mesh goes on: a new build is recorded and its hook runs while
		// the failed one waits for its retry.
		other := submitVia(t, m.nodeOtherThan(leader.Name()), 301)
		testutil.Eventually(t, 20*time.Second, "the next build's hook runs", func() bool {
			return h.count(consensus.EventBuildSubmitted, other) == 1
		})
		testutil.Eventually(t, 60*time.Second, "the failing hook succeeds on its third try", func() bool {
			return h.count(consensus.EventBuildFailed, id) == 1
		})
		allAcked(t)
		if c := h.count(consensus.EventBuildFailed, id); c != 1 {
			t.Errorf("build-failed of %s recorded %d times, want 1", id, c)
		}
		b, _ := os.ReadFile(filepath.Join(shared, "failed-count"))
		if n, _ := strconv.Atoi(strings.TrimSpace(string(b))); n != 3 {
			t.Errorf("the build-failed hook ran %d times, want 3 (two failures, one success)", n)
		}
		lines := h.lines()
		posOther, posFailed := -1, -1
		for i, l := range lines {
			if l.build == other && l.event == consensus.EventBuildSubmitted {
				posOther = i
			}
			if l.build == id && l.event == consensus.EventBuildFailed {
				posFailed = i
			}
		}
		if posOther > posFailed {
			t.Errorf("the later build's hook (line %d) waited for the failing hook (line %d)", posOther, posFailed)
		}
	})
}
