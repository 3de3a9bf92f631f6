package gossip

import (
	"bytes"
	"context"
	"errors"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

func TestGossip_New(t *testing.T) {
	for name, mutate := range map[string]func(*Config){
		"no name":        func(c *Config) { c.Name = "" },
		"short key":      func(c *Config) { c.SecretKey = make([]byte, 16) },
		"negative scale": func(c *Config) { c.Scale = -1 },
		"bad port":       func(c *Config) { c.BindPort = 70000 },
		"negative probe": func(c *Config) { c.Timings.ProbeInterval = -time.Second },
	} {
		t.Run(name, func(t *testing.T) {
			cfg := TestConfig()
			cfg.Name = "a"
			mutate(&cfg)
			if _, err := New(cfg); !errors.Is(err, ErrBadConfig) {
				t.Fatalf("got %v, want ErrBadConfig", err)
			}
		})
	}
	t.Run("scale multiplies timings", func(t *testing.T) {
		cfg := DefaultConfig()
		cfg.Name = "a"
		cfg.Scale = 3
		g, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		lan := LANTimings()
		if got := g.cfg.Timings.ProbeInterval; got != 3*lan.ProbeInterval {
			t.Fatalf("probe interval %v, want %v", got, 3*lan.ProbeInterval)
		}
		if got := g.cfg.Timings.PushPullInterval; got != 3*lan.PushPullInterval {
			t.Fatalf("push/pull interval %v, want %v", got, 3*lan.PushPullInterval)
		}
	})
	t.Run("starts nothing", func(t *testing.T) {
		cfg := TestConfig()
		cfg.Name = "a"
		g, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := g.Join([]string{"127.0.0.1:1"}); !errors.Is(err, ErrNotStarted) {
			t.Fatalf("join before start: got %v, want ErrNotStarted", err)
		}
		if err := g.Leave(time.Second); !errors.Is(err, ErrNotStarted) {
			t.Fatalf("leave before start: got %v, want ErrNotStarted", err)
		}
		if g.LocalAddr() != "" || len(g.Members()) != 0 {
			t.Fatalf("unstarted node lists %q at %q", names(g), g.LocalAddr())
		}
		if err := g.Close(); err != nil {
			t.Fatal(err)
		}
		if err := g.Start(context.Background()); !errors.Is(err, ErrClosed) {
			t.Fatalf("start after close: got %v, want ErrClosed", err)
		}
	})
}

func TestGossip_Start(t *testing.T) {
	t.Run("twice", func(t *testing.T) {
		g := startNode(t, "a", testKey, Meta{})
		if err := g.Start(context.Background()); !errors.Is(err, ErrStarted) {
			t.Fatalf("got %v, want ErrStarted", err)
		}
	})
	t.Run("lists itself", func(t *testing.T) {
		meta := Meta{Systems: []string{"aarch64-linux"}, MaxJobs: 4}
		g := startNode(t, "solo", testKey, meta)
		ms := g.Members()
		if len(ms) != 1 || ms[0].Name != "solo" || ms[0].Status != StatusAlive || !reflect.DeepEqual(ms[0].Meta, meta) {
			t.Fatalf("members %+v", ms)
		}
		if ms[0].Addr != g.LocalAddr() || g.LocalAddr() == "" {
			t.Fatalf("member addr %q, local addr %q", ms[0].Addr, g.LocalAddr())
		}
		if g.NumMembers() != 1 {
			t.Fatalf("NumMembers %d, want 1", g.NumMembers())
		}
	})
	t.Run("canceled context", func(t *testing.T) {
		cfg := TestConfig()
		cfg.Name = "a"
		g, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := g.Start(ctx); !errors.Is(err, context.Canceled) {
			t.Fatalf("got %v, want context.Canceled", err)
		}
	})
}

func TestGossip_Join(t *testing.T) {
	t.Run("all see all with meta", func(t *testing.T) {
		metas := map[string]Meta{
			"a": {Systems: []string{"x86_64-linux"}, Features: []string{"kvm"}, MaxJobs: 8, Load: 0.5,
				FreeDisk: 1 << 40, HTTP: "127.0.0.1:7700", Raft: "127.0.0.1:7701", Builder: "nix"},
			"b": {Systems: []string{"aarch64-linux"}, MaxJobs: 2, Running: 1, P2P: "/ip4/127.0.0.1/tcp/7703",
				PeerID: "12D3KooWb", Version: "0.1.0", Builder: "guix"},
			"c": {Builder: "none"},
		}
		a := startNode(t, "a", testKey, metas["a"])
		b := startNode(t, "b", testKey, metas["b"])
		c := startNode(t, "c", testKey, metas["c"])
		for _, g := range []*Gossip{b, c} {
			n, err := g.Join([]string{a.LocalAddr()})
			if err != nil || n != 1 {
				t.Fatalf("%s join: n=%d err=%v", g.LocalName(), n, err)
			}
		}
		for _, g := range []*Gossip{a, b, c} {
			for name, meta := range metas {
				waitMeta(t, g, name, meta)
			}
			if got := names(g); !slices.Equal(got, []string{"a", "b", "c"}) {
				t.Fatalf("%s lists %v", g.LocalName(), got)
			}
			eventually(t, g.LocalName()+" counts 3 alive", func() bool { return g.NumMembers() == 3 })
		}
		// Addresses are the gossip addresses each node reports for itself.
		for _, g := range []*Gossip{a, b, c} {
			m, _ := a.Member(g.LocalName())
			if m.Addr != g.LocalAddr() {
				t.Fatalf("a lists %s at %q, it is at %q", g.LocalName(), m.Addr, g.LocalAddr())
			}
		}
	})
	t.Run("unreachable", func(t *testing.T) {
		a := startNode(t, "a", testKey, Meta{})
		// Port 1 on loopback refuses connections.
		if n, err := a.Join([]string{"127.0.0.1:1"}); err == nil || n != 0 {
			t.Fatalf("join nowhere: n=%d err=%v", n, err)
		}
	})
}

func TestGossip_SetMeta(t *testing.T) {
	t.Run("update reaches all", func(t *testing.T) {
		nodes := startCluster(t, "a", "b", "c")
		want := Meta{Systems: []string{"x86_64-linux", "i686-linux"}, MaxJobs: 12, Running: 5, Load: 3.5, HTTP: "b:7700"}
		if err := nodes[1].SetMeta(want); err != nil {
			t.Fatal(err)
		}
		if got := nodes[1].Meta(); !reflect.DeepEqual(got, want) {
			t.Fatalf("Meta() = %+v", got)
		}
		for _, g := range nodes {
			waitMeta(t, g, "b", want)
		}
	})
	t.Run("too large is refused and not applied", func(t *testing.T) {
		g := startNode(t, "a", testKey, Meta{MaxJobs: 1})
		big := Meta{Version: string(bytes.Repeat([]byte("v"), MaxMetaSize))}
		if err := g.SetMeta(big); !errors.Is(err, ErrMetaTooLarge) {
			t.Fatalf("got %v, want ErrMetaTooLarge", err)
		}
		if m, _ := g.Member("a"); m.Meta.MaxJobs != 1 || m.Meta.Version != "" {
			t.Fatalf("meta changed to %+v", m.Meta)
		}
	})
}

func TestGossip_Leave(t *testing.T) {
	nodes := startCluster(t, "a", "b", "c")
	c := nodes[2]
	if err := c.Leave(time.Second); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	for _, g := range nodes[:2] {
		waitStatus(t, g, "c", StatusLeft)
		m, _ := g.Member("c")
		if m.Meta.HTTP != "c:7700" {
			t.Fatalf("%s lost c's meta: %+v", g.LocalName(), m.Meta)
		}
	}
	if err := c.Leave(time.Second); !errors.Is(err, ErrClosed) {
		t.Fatalf("leave after close: got %v, want ErrClosed", err)
	}

	// The cases below are the orders a lossy network can deliver a leave
	// in; each must end with the member listed as left.
	unstarted := func(t *testing.T) *Gossip {
		cfg := TestConfig()
		cfg.Name = "a"
		g, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	unmarked := func(t *testing.T, name string) *memberlist.Node {
		raw, err := EncodeMeta(Meta{MaxJobs: 1})
		if err != nil {
			t.Fatal(err)
		}
		return &memberlist.Node{Name: name, Meta: raw}
	}
	t.Run("notice before the unmarked leave", func(t *testing.T) {
		g := unstarted(t)
		g.handleJoin(unmarked(t, "b"))
		g.handleMsg(append([]byte{msgLeaving}, "b"...))
		g.handleLeave(unmarked(t, "b"))
		if m, _ := g.Member("b"); m.Status != StatusLeft {
			t.Fatalf("b is %s, want left", m.Status)
		}
	})
	t.Run("notice after a death", func(t *testing.T) {
		g := unstarted(t)
		g.handleJoin(unmarked(t, "b"))
		g.handleLeave(unmarked(t, "b"))
		if m, _ := g.Member("b"); m.Status != StatusDead {
			t.Fatalf("b is %s before the notice, want dead", m.Status)
		}
		g.handleMsg(append([]byte{msgLeaving}, "b"...))
		if m, _ := g.Member("b"); m.Status != StatusLeft {
			t.Fatalf("b is %s, want left", m.Status)
		}
		var last Event
		for len(g.Events()) > 0 {
			last = <-g.Events()
		}
		if last.Type != EventLeave || last.Member.Status != StatusLeft {
			t.Fatalf("last event %s/%s, want leave/left", last.Type, last.Member.Status)
		}
	})
	t.Run("push/pull reports the leave after a death", func(t *testing.T) {
		g := unstarted(t)
		g.handleJoin(unmarked(t, "b"))
		g.handleLeave(unmarked(t, "b"))
		g.noteMerge([]*memberlist.Node{{Name: "b", State: memberlist.StateLeft}})
		if m, _ := g.Member("b"); m.Status != StatusLeft {
			t.Fatalf("b is %s, want left", m.Status)
		}
	})
	t.Run("an old death is not rewritten", func(t *testing.T) {
		g := unstarted(t)
		g.members["b"] = &Member{Name: "b", Status: StatusDead, Changed: time.Now().Add(-time.Hour)}
		g.noteMerge([]*memberlist.Node{{Name: "b", State: memberlist.StateLeft}})
		if m, _ := g.Member("b"); m.Status != StatusDead {
			t.Fatalf("b is %s, want dead", m.Status)
		}
	})
	t.Run("malformed notices change nothing", func(t *testing.T) {
		g := unstarted(t)
		g.handleJoin(unmarked(t, "b"))
		for _, msg := range [][]byte{nil, {msgLeaving}, {9, 'b'}, append([]byte{msgLeaving}, make([]byte, maxUserMsg)...)} {
			g.handleMsg(msg)
		}
		g.handleLeave(unmarked(t, "b"))
		if m, _ := g.Member("b"); m.Status != StatusDead {
			t.Fatalf("b is %s, want dead", m.Status)
		}
	})
}

func TestGossip_Close(t *testing.T) {
	t.Run("killed node is dead", func(t *testing.T) {
		nodes := startCluster(t, "a", "b", "c")
		if err := nodes[2].Close(); err != nil {
			t.Fatal(err)
		}
		for _, g := range nodes[:2] {
			waitStatus(t, g, "c", StatusDead)
		}
		if err := nodes[2].Close(); err != nil {
			t.Fatalf("second close: %v", err)
		}
	})
	t.Run("closes events", func(t *testing.T) {
		g := startNode(t, "a", testKey, Meta{})
		if err := g.Close(); err != nil {
			t.Fatal(err)
		}
		for range g.Events() {
		}
	})
}

func TestGossip_Events(t *testing.T) {
	t.Run("join update leave", func(t *testing.T) {
		a := startNode(t, "a", testKey, Meta{})
		b := startNode(t, "b", testKey, Meta{MaxJobs: 1})
		if _, err := b.Join([]string{a.LocalAddr()}); err != nil {
			t.Fatal(err)
		}
		waitStatus(t, a, "b", StatusAlive)
		if err := b.SetMeta(Meta{MaxJobs: 2}); err != nil {
			t.Fatal(err)
		}
		waitMeta(t, a, "b", Meta{MaxJobs: 2})
		if err := b.Leave(time.Second); err != nil {
			t.Fatal(err)
		}
		waitStatus(t, a, "b", StatusLeft)

		var got []string
		for len(a.Events()) > 0 {
			ev := <-a.Events()
			if ev.Member.Name == "b" {
				got = append(got, ev.Type.String()+"/"+ev.Member.Status.String())
			}
		}
		// A loaded machine may add a false death and its refutation; the
		// three real changes must still come in order, the leave last.
		want := []string{"join/alive", "update/alive", "leave/left"}
		if !isSubsequence(want, got) || got[len(got)-1] != "leave/left" {
			t.Fatalf("events for b: %v, want %v in order", got, want)
		}
	})
	t.Run("full buffer drops oldest", func(t *testing.T) {
		cfg := TestConfig()
		cfg.Name = "a"
		cfg.EventBuffer = 2
		g, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range []string{"x", "y", "z"} {
			g.record(EventJoin, Member{Name: n})
		}
		if g.DroppedEvents() != 1 {
			t.Fatalf("dropped %d, want 1", g.DroppedEvents())
		}
		if e1, e2 := <-g.Events(), <-g.Events(); e1.Member.Name != "y" || e2.Member.Name != "z" {
			t.Fatalf("kept %s, %s; want y, z", e1.Member.Name, e2.Member.Name)
		}
		if got := names(g); !slices.Equal(got, []string{"x", "y", "z"}) {
			t.Fatalf("members %v: the table must not lose what the channel dropped", got)
		}
	})
}

func TestGossip_Members(t *testing.T) {
	t.Run("forgets gone members after retention", func(t *testing.T) {
		cfg := TestConfig()
		cfg.Name = "a"
		cfg.Retention = time.Minute
		g, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		old := time.Now().Add(-2 * time.Minute)
		g.members["dead"] = &Member{Name: "dead", Status: StatusDead, Changed: old}
		g.members["left"] = &Member{Name: "left", Status: StatusLeft, Changed: time.Now()}
		g.members["alive"] = &Member{Name: "alive", Status: StatusAlive, Changed: old}
		if got := names(g); !slices.Equal(got, []string{"alive", "left"}) {
			t.Fatalf("members %v, want [alive left]", got)
		}
	})
}

func TestGossip_SecretKey(t *testing.T) {
	otherKey := bytes.Repeat([]byte{0x17}, 32)
	for name, key := range map[string][]byte{"wrong key": otherKey, "no key": nil} {
		t.Run(name, func(t *testing.T) {
			nodes := startCluster(t, "a", "b")
			x := startNode(t, "intruder", key, Meta{HTTP: "evil:7700"})
			if n, err := x.Join([]string{nodes[0].LocalAddr()}); err == nil {
				t.Fatalf("intruder joined %d nodes", n)
			}
			if n, err := nodes[1].Join([]string{x.LocalAddr()}); err == nil {
				t.Fatalf("member joined the intruder (%d)", n)
			}
			// A legitimate node joining afterwards proves gossip moved on;
			// by then the intruder would have spread if it could.
			d := startNode(t, "d", testKey, Meta{})
			if _, err := d.Join([]string{nodes[1].LocalAddr()}); err != nil {
				t.Fatal(err)
			}
			for _, g := range append(nodes, d) {
				for _, n := range []string{"a", "b", "d"} {
					waitStatus(t, g, n, StatusAlive)
				}
				if _, ok := g.Member("intruder"); ok {
					t.Fatalf("%s lists the intruder", g.LocalName())
				}
			}
			if got := names(x); !slices.Equal(got, []string{"intruder"}) {
				t.Fatalf("intruder learned %v", got)
			}
		})
	}
}

// garbageMeta is a memberlist delegate advertising meta no drvmesh node
// can decode.
type garbageMeta struct{}

func (garbageMeta) NodeMeta(int) []byte             { return []byte{0xee, 0x01} }
func (garbageMeta) NotifyMsg([]byte)                {}
func (garbageMeta) GetBroadcasts(int, int) [][]byte { return nil }
func (garbageMeta) LocalState(bool) []byte          { return nil }
func (garbageMeta) MergeRemoteState([]byte, bool)   {}

func TestGossip_Alive(t *testing.T) {
	t.Run("refuses undecodable meta", func(t *testing.T) {
		nodes := startCluster(t, "a", "b")
		mc := memberlist.DefaultLANConfig()
		mc.Name = "stranger"
		mc.BindAddr, mc.BindPort, mc.AdvertisePort = "127.0.0.1", 0, 0
		mc.SecretKey = testKey
		mc.Delegate = garbageMeta{}
		mc.ProbeInterval, mc.GossipInterval, mc.PushPullInterval = 100*time.Millisecond, 10*time.Millisecond, 200*time.Millisecond
		mc.Logger = newStdLogger(testLogger(t))
		ml, err := memberlist.Create(mc)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = ml.Shutdown() })
		_, _ = ml.Join([]string{nodes[0].LocalAddr()})
		// A legitimate join afterwards is the sync point.
		d := startNode(t, "d", testKey, Meta{})
		if _, err := d.Join([]string{nodes[0].LocalAddr()}); err != nil {
			t.Fatal(err)
		}
		for _, g := range append(nodes, d) {
			waitStatus(t, g, "d", StatusAlive)
			waitStatus(t, g, "a", StatusAlive)
			if _, ok := g.Member("stranger"); ok {
				t.Fatalf("%s lists a node with undecodable meta", g.LocalName())
			}
		}
	})
}

// isSubsequence reports whether sub appears in s in order.
func isSubsequence(sub, s []string) bool {
	i := 0
	for _, x := range s {
		if i < len(sub) && x == sub[i] {
			i++
		}
	}
	return i == len(sub)
}
