package narcache

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/drvmesh/drvmesh/internal/testutil"
)

func TestP2PLimits_Limiter(t *testing.T) {
	t.Run("defaults", func(t *testing.T) {
		l := P2PLimits{}.withDefaults()
		if l.Memory <= 0 || l.FDs <= 0 {
			t.Fatalf("memory %d, fds %d: not scaled to the machine", l.Memory, l.FDs)
		}
		want := DefaultP2PLimits
		want.Memory, want.FDs = l.Memory, l.FDs
		if l != want {
			t.Fatalf("got %+v, want %+v", l, want)
		}
		sys := l.limiter().GetSystemLimits()
		if sys.GetConnTotalLimit() >= math.MaxInt/2 || sys.GetMemoryLimit() >= math.MaxInt64/2 {
			t.Fatalf("system limits are unbounded: %d conns, %d bytes", sys.GetConnTotalLimit(), sys.GetMemoryLimit())
		}
	})
	t.Run("explicit", func(t *testing.T) {
		l := P2PLimits{Memory: 1 << 30, FDs: 1000, ConnsPerPeer: 3, StreamsPerPeer: 50,
			NarStreamsPerPeer: 4, MemoryPerPeer: 100 << 20}.withDefaults()
		lim := l.limiter()
		p := lim.GetPeerLimits(peer.ID("any peer"))
		for _, dir := range []network.Direction{network.DirInbound, network.DirOutbound} {
			if p.GetConnLimit(dir) != 3 || p.GetStreamLimit(dir) != 50 {
				t.Fatalf("%v: per peer %d conns, %d streams", dir, p.GetConnLimit(dir), p.GetStreamLimit(dir))
			}
		}
		if p.GetConnTotalLimit() != 3 || p.GetStreamTotalLimit() != 50 || p.GetMemoryLimit() != 100<<20 {
			t.Fatalf("per peer %d conns, %d streams, %d bytes", p.GetConnTotalLimit(), p.GetStreamTotalLimit(), p.GetMemoryLimit())
		}
		nar := lim.GetProtocolPeerLimits(NarProtocol)
		if nar.GetStreamLimit(network.DirInbound) != 4 || nar.GetStreamLimit(network.DirOutbound) != 4 {
			t.Fatalf("nar streams per peer: %d in, %d out",
				nar.GetStreamLimit(network.DirInbound), nar.GetStreamLimit(network.DirOutbound))
		}
		if fd := lim.GetSystemLimits().GetFDLimit(); fd != 1000 {
			t.Fatalf("system fd limit %d, want 1000", fd)
		}
	})
}

// rawPeer is a bare libp2p host, a member of server's mesh, that talks
// the nar protocol by hand.
func rawPeer(t *testing.T, server *testNode) host.Host {
	t.Helper()
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableMetrics())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := h.Close(); err != nil {
			t.Error(err)
		}
	})
	server.mem.add(h.ID())
	h.Peerstore().AddAddrs(server.p2p.ID(), server.p2p.Host().Addrs(), time.Hour)
	return h
}

// narStreamsIn counts the nar streams peers have open to n.
func narStreamsIn(n *testNode) int {
	var c int
	_ = n.p2p.Host().Network().ResourceManager().ViewProtocol(NarProtocol, func(s network.ProtocolScope) error {
		c = s.Stat().NumStreamsInbound
		return nil
	})
	return c
}

// TestP2P_ServeLimits checks that a member cannot hold the serving side
// of the nar protocol: an overlong or missing request, a reader that
// stops reading and too many streams at once are all cut off.
func TestP2P_ServeLimits(t *testing.T) {
	src := newTestDisk(t, DiskConfig{Compressions: []string{CompressionNone}})
	// 8 MiB of random bytes: far more than a stream window and the
	// loopback socket buffers hold, so a reader that stops stalls the
	// sender.
	res, err := src.Ingest(context.Background(), bytes.NewReader(makeBigNar(8<<20)), Expect{})
	if err != nil {
		t.Fatal(err)
	}
	want := res.Files[0]
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	server := func(t *testing.T, l P2PLimits) *testNode {
		return newTestNodeWith(t, src, func(c *P2PConfig) { c.Limits = l })
	}
	// cutOff waits until s is reset: its read fails before the whole file.
	cutOff := func(t *testing.T, s network.Stream) {
		t.Helper()
		n, err := io.Copy(io.Discard, s)
		if err == nil || n >= want.FileSize {
			t.Fatalf("read %d bytes, err %v: the server did not cut the stream", n, err)
		}
	}

	t.Run("overlong request", func(t *testing.T) {
		srv := server(t, P2PLimits{})
		s, err := rawPeer(t, srv).NewStream(ctx, srv.p2p.ID(), NarProtocol)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Write(bytes.Repeat([]byte("a"), 2*maxRequestLen)); err != nil {
			t.Fatal(err)
		}
		cutOff(t, s)
	})
	t.Run("request never ends", func(t *testing.T) {
		srv := server(t, P2PLimits{RequestTimeout: 200 * time.Millisecond})
		s, err := rawPeer(t, srv).NewStream(ctx, srv.p2p.ID(), NarProtocol)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Write([]byte(want.Key())); err != nil { // no newline
			t.Fatal(err)
		}
		start := time.Now()
		cutOff(t, s)
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("cut after %v", d)
		}
	})
	t.Run("reader stops reading", func(t *testing.T) {
		srv := server(t, P2PLimits{IdleTimeout: 300 * time.Millisecond})
		s, err := rawPeer(t, srv).NewStream(ctx, srv.p2p.ID(), NarProtocol)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Write([]byte(want.Key() + "\n")); err != nil {
			t.Fatal(err)
		}
		hdr := make([]byte, 9)
		if _, err := io.ReadFull(s, hdr); err != nil || hdr[0] != statusOK {
			t.Fatalf("header %v: %v", hdr, err)
		}
		// Read nothing more: the server must give up on its own.
		testutil.Eventually(t, 10*time.Second, "the server drops a stream nobody reads", func() bool {
			return narStreamsIn(srv) == 0
		})
		cutOff(t, s)
	})
	t.Run("too many nar streams", func(t *testing.T) {
		srv := server(t, P2PLimits{NarStreamsPerPeer: 2})
		c := rawPeer(t, srv)
		open := func() network.Stream {
			s, err := c.NewStream(ctx, srv.p2p.ID(), NarProtocol)
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
		var held []network.Stream
		for range 2 { // two requests that have not ended yet
			s := open()
			if _, err := s.Write([]byte("x")); err != nil {
				t.Fatal(err)
			}
			held = append(held, s)
		}
		testutil.Eventually(t, 10*time.Second, "the server holds two nar streams", func() bool {
			return narStreamsIn(srv) == 2
		})
		third := open()
		if _, err := third.Write([]byte(want.Key() + "\n")); err == nil {
			cutOff(t, third)
		}
		for _, s := range held {
			_ = s.Reset()
		}
		testutil.Eventually(t, 10*time.Second, "the server drops the reset streams", func() bool {
			return narStreamsIn(srv) == 0
		})
		fourth := open()
		if _, err := fourth.Write([]byte(want.Key() + "\n")); err != nil {
			t.Fatal(err)
		}
		n, err := io.Copy(io.Discard, fourth)
		if err != nil || n != 9+want.FileSize {
			t.Fatalf("read %d bytes: %v", n, err)
		}
	})
}

// TestP2P_MaxFileSize checks that MaxFileSize bounds only files whose
// size the index does not know: a recorded size is the bound then.
func TestP2P_MaxFileSize(t *testing.T) {
	nar := makeNar(t, bytes.Repeat([]byte("bigger than the cap "), 100))
	holder := newTestNode(t, nil)
	want := ingestEntry(t, holder.disk, testPath, nar).Files[0]
	f := newTestNodeWith(t, nil, func(c *P2PConfig) { c.Limits.MaxFileSize = want.FileSize - 1 })
	f.mem.add(holder.p2p.ID())
	holder.mem.add(f.p2p.ID())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	unknown := want
	unknown.FileSize = 0
	if _, err := f.p2p.Replicate(ctx, holder.holder(), unknown); !errors.Is(err, ErrPeer) {
		t.Fatalf("size unknown: err = %v, want the cap to refuse it", err)
	}
	if _, err := f.p2p.Replicate(ctx, holder.holder(), want); err != nil {
		t.Fatalf("size recorded: %v", err)
	}
}
