package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// A fault stands on some hosts until its time is up, then is undone.
type fault struct {
	kind  string
	hosts []string // the hosts it takes down or cuts off
	net   bool     // a cut or loss: undone by heal, one at a time
	until time.Time
	undo  func() error
}

// injector runs the seeded fault schedule: every tick it undoes the
// faults whose time is up and may start one more, as long as no more
// than two hosts are affected at once.
type injector struct {
	r         *run
	rng       *rand.Rand
	active    []*fault
	counts    map[string]int
	schedule  []string
	leftovers int      // processes a killed host left behind
	leftWhat  []string // what they were
	atKill    int      // processes of killed hosts found right after the kill
	crashes   []string // hosts that died on their own, with their last words
	start     time.Time
}

func newInjector(r *run, rng *rand.Rand) *injector {
	return &injector{r: r, rng: rng, counts: map[string]int{}}
}

// The kinds of fault and how often each is drawn.
var faultKinds = []struct {
	kind   string
	weight int
}{
	{"kill", 3}, {"kill-leader", 2}, {"pause", 2}, {"pause-leader", 1},
	{"cut-minority", 1}, {"cut-leader", 2}, {"cut-oneway", 1}, {"loss", 1}, {"disk-full", 1},
}

func (in *injector) run(ctx context.Context) {
	in.start = time.Now()
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			for _, f := range in.active {
				in.end(f)
			}
			in.active = nil
			return
		case <-tick.C:
		}
		in.restartCrashed()
		now := time.Now()
		in.active = slices.DeleteFunc(in.active, func(f *fault) bool {
			if now.Before(f.until) {
				return false
			}
			in.end(f)
			return true
		})
		// Draw every tick, used or not, so the schedule follows the seed.
		roll, pick, hold := in.rng.Float64(), in.pickKind(), 2+in.rng.Float64()*6
		a, b := in.rng.IntN(hosts), in.rng.IntN(hosts-1)
		if in.rng.IntN(3) == 0 && strings.HasPrefix(pick, "kill") {
			hold = 0.5 // a quick restart
		}
		if roll < 0.35 && len(in.active) < 2 {
			in.begin(pick, time.Duration(hold*float64(time.Second)), a, b)
		}
	}
}

func (in *injector) pickKind() string {
	total := 0
	for _, k := range faultKinds {
		total += k.weight
	}
	n := in.rng.IntN(total)
	for _, k := range faultKinds {
		if n < k.weight {
			return k.kind
		}
		n -= k.weight
	}
	return faultKinds[0].kind
}

// affected are the hosts the standing faults affect.
func (in *injector) affected() []string {
	var out []string
	for _, f := range in.active {
		out = append(out, f.hosts...)
	}
	return out
}

// begin starts a fault of kind on host index a (and b, a second pick
// among the others) if it fits under the limit of two affected hosts.
func (in *injector) begin(kind string, hold time.Duration, a, b int) {
	r := in.r
	busy := in.affected()
	host := r.hosts[a]
	other := slices.Delete(slices.Clone(r.hosts), a, a+1)[b]
	if strings.HasSuffix(kind, "-leader") {
		host = r.leader(busy)
		if host == "" {
			return
		}
	}
	f := &fault{kind: kind, hosts: []string{host}, until: time.Now().Add(hold)}
	switch kind {
	case "cut-minority":
		f.hosts = []string{host, other}
	}
	what := strings.Join(f.hosts, ",")
	if kind == "cut-oneway" {
		what = host + "->" + other
	}
	if slices.ContainsFunc(f.hosts, func(h string) bool { return slices.Contains(busy, h) }) || len(busy)+len(f.hosts) > 2 {
		return
	}
	f.net = kind == "cut-minority" || kind == "cut-leader" || kind == "cut-oneway" || kind == "loss"
	if f.net && slices.ContainsFunc(in.active, func(g *fault) bool { return g.net }) {
		return
	}
	var err error
	switch kind {
	case "kill", "kill-leader":
		_, err = r.tb.Script("kill", host)
		f.undo = func() error { in.countLeftovers(host); _, err := r.tb.Script("start", host); return err }
	case "pause", "pause-leader":
		_, err = r.tb.Script("pause", host)
		f.undo = func() error { _, err := r.tb.Script("resume", host); return err }
	case "cut-minority", "cut-leader":
		_, err = r.tb.Script(append([]string{"cut"}, f.hosts...)...)
	case "cut-oneway":
		_, err = r.tb.Script("cut-oneway", host, other)
	case "loss":
		_, err = r.tb.Script("netem", host, "loss 15%")
	case "disk-full":
		_, err = r.tb.Script("fill-disk", host)
		f.undo = func() error { _, err := r.tb.Script("free-disk", host); return err }
	}
	if f.net {
		f.undo = func() error { _, err := r.tb.Script("heal"); return err }
	}
	if err != nil {
		r.t.Logf("fault %s on %v: %v", kind, f.hosts, err)
		return
	}
	in.counts[kind]++
	in.schedule = append(in.schedule, fmt.Sprintf("%6.1fs %s %s for %v", time.Since(in.start).Seconds(), kind, what, time.Until(f.until).Round(100*time.Millisecond)))
	in.active = append(in.active, f)
}

func (in *injector) end(f *fault) {
	if err := f.undo(); err != nil {
		in.r.t.Errorf("undo %s on %v: %v", f.kind, f.hosts, err)
	}
}

// countLeftovers counts the processes of a killed host that are still
// there 5 s after the kill (its Nix builds and their children): they are
// found by the host's network namespace, their root or command line in
// the host's dir. It kills what it counts, so that they are counted once.
func (in *injector) countLeftovers(h string) {
	limit := time.Now().Add(5 * time.Second)
	var left []int
	for i := 0; ; i++ {
		left = in.hostProcs(h)
		if i == 0 {
			in.atKill += len(left)
		}
		if len(left) == 0 || time.Now().After(limit) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, pid := range left {
		in.leftovers++
		cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		in.leftWhat = append(in.leftWhat, fmt.Sprintf("%s: pid %d %s", h, pid, strings.ReplaceAll(string(cmd), "\x00", " ")))
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// hostProcs lists the live processes of host h other than this test's.
func (in *injector) hostProcs(h string) []int {
	dir := filepath.Join(in.r.tb.Dir(), h) + "/"
	nsIno := inode("/run/netns/" + in.r.ns[h])
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() || !alive(pid) {
			continue
		}
		p := "/proc/" + e.Name()
		root, _ := os.Readlink(p + "/root")
		cmd, _ := os.ReadFile(p + "/cmdline")
		if (nsIno != 0 && inode(p+"/ns/net") == nsIno) || strings.HasPrefix(root+"/", dir) || strings.Contains(string(cmd), dir) {
			out = append(out, pid)
		}
	}
	return out
}

func inode(path string) uint64 {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return 0
	}
	return st.Ino
}

// alive: the process exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] != 'Z' && s[i+2] != 'X'
}

// restartCrashed starts again the hosts that died on their own, which no
// standing kill explains, as a supervisor would, and records each crash
// with the first panic or fatal line of the host's log.
func (in *injector) restartCrashed() {
	for _, h := range in.r.hosts {
		if in.r.running(h) || slices.ContainsFunc(in.active, func(f *fault) bool {
			return strings.HasPrefix(f.kind, "kill") && slices.Contains(f.hosts, h)
		}) {
			continue
		}
		why := in.r.lastWords(h)
		in.crashes = append(in.crashes, fmt.Sprintf("%s at %.1fs: %s", h, time.Since(in.start).Seconds(), why))
		in.r.t.Logf("%s died on its own: %s", h, why)
		if _, err := in.r.tb.Script("start", h); err != nil {
			in.r.t.Logf("restart %s: %v", h, err)
		}
	}
}
