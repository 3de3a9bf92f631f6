package narcache

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/client"

	"github.com/drvmesh/drvmesh/internal/testutil"
)

func (m *members) remove(id peer.ID) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.ids, id)
}

// relayMesh is a relay R, a node T behind it (private, reachable only
// through R) and a fetcher F that knows T only by its circuit address.
type relayMesh struct {
	r, t, f *testNode
	circuit string // T's circuit address through R, ending in /p2p/T
}

func newRelayMesh(tb testing.TB, tDisk *Disk) *relayMesh {
	tb.Helper()
	r := newTestNodeWith(tb, nil, func(c *P2PConfig) { c.RelayService = true })
	rInfo := peer.AddrInfo{ID: r.p2p.ID()}
	for _, a := range r.p2p.Host().Addrs() {
		rInfo.Addrs = append(rInfo.Addrs, a)
	}
	t := newTestNodeWith(tb, tDisk, func(c *P2PConfig) {
		c.ForcePrivate = true
		c.Relays = []peer.AddrInfo{rInfo}
	})
	// F runs DCUtR like every node does; on loopback there is no public
	// address to punch a hole to, so the connection stays relayed.
	f := newTestNodeWith(tb, nil, func(c *P2PConfig) { c.HolePunching = true })
	r.mem.add(t.p2p.ID(), f.p2p.ID())
	t.mem.add(r.p2p.ID(), f.p2p.ID())
	f.mem.add(r.p2p.ID(), t.p2p.ID())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := t.p2p.WaitReserved(ctx); err != nil {
		tb.Fatal(err)
	}
	addrs := t.p2p.Addrs()
	if len(addrs) == 0 || !strings.HasSuffix(addrs[0], "/p2p/"+r.p2p.ID().String()+"/p2p-circuit") {
		tb.Fatalf("a private node with a reservation announces %v first, want its circuit through %s", addrs, r.p2p.ID())
	}
	return &relayMesh{r: r, t: t, f: f, circuit: addrs[0] + "/p2p/" + t.p2p.ID().String()}
}

// holder names T by its circuit address only: F is never told where T
// listens.
func (m *relayMesh) holder() Holder {
	return Holder{ID: m.t.p2p.ID().String(), Addrs: []string{m.circuit}}
}

func TestP2P_Relay(t *testing.T) {
	nar := makeNar(t, bytes.Repeat([]byte("behind nat "), 50000))
	tDisk := newTestDisk(t, DiskConfig{})
	want := ingestEntry(t, tDisk, testPath, nar).Files[0]
	m := newRelayMesh(t, tDisk)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	t.Run("member fetches through the relay", func(t *testing.T) {
		before := m.r.p2p.RelayStats()
		f, err := m.f.p2p.Replicate(ctx, m.holder(), want)
		if err != nil {
			t.Fatal(err)
		}
		if f.Key() != want.Key() {
			t.Fatalf("stored %s, want %s", f.Key(), want.Key())
		}
		rc, _, err := m.f.disk.OpenNar(want.Key())
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(readAll(t, rc), nar) {
			t.Fatal("the relayed replica differs")
		}
		after := m.r.p2p.RelayStats()
		if after.Circuits <= before.Circuits {
			t.Fatalf("relay opened no circuit: %+v", after)
		}
		// The relay counts both directions: the request and the whole file.
		if got := after.Bytes - before.Bytes; got < want.FileSize {
			t.Fatalf("relay carried %d bytes, the file has %d", got, want.FileSize)
		}
		conns := m.f.p2p.Host().Network().ConnsToPeer(m.t.p2p.ID())
		if len(conns) == 0 {
			t.Fatal("no connection to the target")
		}
		for _, c := range conns {
			if !isCircuit(c.RemoteMultiaddr()) {
				t.Fatalf("direct connection to the target at %s", c.RemoteMultiaddr())
			}
		}
	})
	t.Run("stranger is refused by the relay", func(t *testing.T) {
		n := newTestNode(t, nil)
		n.mem.add(m.r.p2p.ID(), m.t.p2p.ID()) // n trusts them; nobody trusts n
		_, err := n.p2p.Replicate(ctx, m.holder(), want)
		if err == nil {
			t.Fatal("a stranger fetched through the relay")
		}
		if n.disk.Has(want.Key()) {
			t.Fatal("a stranger kept a nar")
		}
		for _, h := range []*testNode{m.r, m.t} {
			if h.p2p.Host().Network().Connectedness(n.p2p.ID()) != network.NotConnected {
				t.Fatalf("%s keeps a connection to a stranger", h.p2p.ID())
			}
		}
	})
	t.Run("stranger cannot reserve a slot", func(t *testing.T) {
		// A bare host: no gater of its own, as an attacker would run.
		h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableMetrics())
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		before := m.r.p2p.RelayStats()
		rInfo := peer.AddrInfo{ID: m.r.p2p.ID(), Addrs: m.r.p2p.Host().Addrs()}
		if _, err := client.Reserve(ctx, h, rInfo); err == nil {
			t.Fatal("the relay reserved a slot for a stranger")
		}
		if after := m.r.p2p.RelayStats(); after.Reservations != before.Reservations {
			t.Fatalf("the relay granted a reservation: %+v", after)
		}
		if c := m.r.p2p.Host().Network().Connectedness(h.ID()); c != network.NotConnected {
			t.Fatalf("the relay keeps a %s connection to a stranger", c)
		}
	})
	t.Run("relay member is refused by the target", func(t *testing.T) {
		n := newTestNode(t, nil)
		n.mem.add(m.r.p2p.ID(), m.t.p2p.ID())
		m.r.mem.add(n.p2p.ID()) // the relay admits n; the target does not
		_, err := n.p2p.Replicate(ctx, m.holder(), want)
		if err == nil {
			t.Fatal("a non-member of the target fetched through the relay")
		}
		if n.disk.Has(want.Key()) {
			t.Fatal("a non-member kept a nar")
		}
		if c := m.t.p2p.Host().Network().Connectedness(n.p2p.ID()); c != network.NotConnected {
			t.Fatalf("the target keeps a %s connection to a non-member", c)
		}
	})
	t.Run("relay refuses a circuit to a non-member", func(t *testing.T) {
		g := newTestNode(t, nil)
		g.mem.add(m.r.p2p.ID(), m.t.p2p.ID())
		m.t.mem.add(g.p2p.ID())
		m.r.mem.add(g.p2p.ID())
		m.r.mem.remove(m.t.p2p.ID()) // the relay no longer counts t a member
		defer m.r.mem.add(m.t.p2p.ID())
		before := m.r.p2p.RelayStats()
		if _, err := g.p2p.Replicate(ctx, m.holder(), want); err == nil {
			t.Fatal("the relay relayed to a non-member")
		}
		if after := m.r.p2p.RelayStats(); after.Circuits != before.Circuits {
			t.Fatalf("the relay opened a circuit to a non-member: %+v", after)
		}
	})
}

func TestP2P_Addrs(t *testing.T) {
	t.Run("no relays", func(t *testing.T) {
		n := newTestNode(t, nil)
		if n.p2p.Reserved() != nil {
			t.Fatal("a node without relays reports a reservation channel")
		}
		if err := n.p2p.WaitReserved(context.Background()); err != nil {
			t.Fatal(err)
		}
		for _, a := range n.p2p.Addrs() {
			if strings.Contains(a, "p2p-circuit") {
				t.Fatalf("a node without relays announces %s", a)
			}
		}
	})
	t.Run("unreachable relay", func(t *testing.T) {
		gone := newTestNode(t, nil)
		info := peer.AddrInfo{ID: gone.p2p.ID(), Addrs: gone.p2p.Host().Addrs()}
		if err := gone.p2p.Close(); err != nil {
			t.Fatal(err)
		}
		n := newTestNodeWith(t, nil, func(c *P2PConfig) {
			c.ForcePrivate = true
			c.Relays = []peer.AddrInfo{info}
		})
		n.mem.add(info.ID)
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		if err := n.p2p.WaitReserved(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v", err)
		}
		for _, a := range n.p2p.Addrs() {
			if strings.Contains(a, "p2p-circuit") {
				t.Fatalf("announces %s without a reservation", a)
			}
		}
	})
	t.Run("reservation comes back after the relay drops it", func(t *testing.T) {
		m := newRelayMesh(t, nil)
		// Drop the connection: the relay forgets the reservation with it.
		if err := m.r.p2p.Host().Network().ClosePeer(m.t.p2p.ID()); err != nil {
			t.Fatal(err)
		}
		testutil.Eventually(t, 20*time.Second, "reservation renewed after the relay dropped it", func() bool {
			return m.r.p2p.RelayStats().Reservations >= 2 &&
				m.r.p2p.Host().Network().Connectedness(m.t.p2p.ID()) == network.Connected
		})
		nar := makeNar(t, []byte("after reconnect"))
		want := ingestEntry(t, m.t.disk, testPath, nar).Files[0]
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := m.f.p2p.Replicate(ctx, m.holder(), want); err != nil {
			t.Fatal(err)
		}
	})
}

func TestHolderAddr(t *testing.T) {
	self := newTestNode(t, nil).p2p.ID()
	other := newTestNode(t, nil).p2p.ID()
	for _, tc := range []struct {
		name, in, want string
		bad            bool
	}{
		{name: "plain", in: "/ip4/1.2.3.4/tcp/5", want: "/ip4/1.2.3.4/tcp/5"},
		{name: "own id", in: "/ip4/1.2.3.4/tcp/5/p2p/" + self.String(), want: "/ip4/1.2.3.4/tcp/5"},
		{name: "circuit", in: "/ip4/1.2.3.4/tcp/5/p2p/" + other.String() + "/p2p-circuit/p2p/" + self.String(),
			want: "/ip4/1.2.3.4/tcp/5/p2p/" + other.String() + "/p2p-circuit"},
		{name: "circuit without target", in: "/ip4/1.2.3.4/tcp/5/p2p/" + other.String() + "/p2p-circuit",
			want: "/ip4/1.2.3.4/tcp/5/p2p/" + other.String() + "/p2p-circuit"},
		{name: "bare id", in: "/p2p/" + self.String()},
		{name: "another peer", in: "/ip4/1.2.3.4/tcp/5/p2p/" + other.String(), bad: true},
		{name: "junk", in: "not an address", bad: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := holderAddr(tc.in, self)
			if tc.bad {
				if err == nil {
					t.Fatalf("accepted %s as %v", tc.in, got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var s string
			if got != nil {
				s = got.String()
			}
			if s != tc.want {
				t.Fatalf("got %q, want %q", s, tc.want)
			}
		})
	}
}

// BenchmarkP2P_Relayed moves a 100 MB nar from a node behind a relay to a
// fetcher that knows only the circuit address, all on loopback.
func BenchmarkP2P_Relayed(b *testing.B) {
	src, want := benchNarDisk(b)
	m := newRelayMesh(b, src)
	benchFetch(b, m.f.p2p, m.holder(), want)
	b.StopTimer()
	if st := m.r.p2p.RelayStats(); st.Bytes < want.FileSize {
		b.Fatalf("the relay carried %d bytes; the transfer went around it", st.Bytes)
	}
}
