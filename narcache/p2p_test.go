package narcache

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

// members is a mutable allow list.
type members struct {
	mu  sync.Mutex
	ids map[peer.ID]bool
}

func (m *members) allow(id peer.ID) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.ids[id]
}

func (m *members) add(ids ...peer.ID) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, id := range ids {
		m.ids[id] = true
	}
}

// testNode is a disk plus a started libp2p host on loopback.
type testNode struct {
	disk *Disk
	p2p  *P2P
	mem  *members
	bad  *badPeers
}

func newTestNode(t testing.TB, disk *Disk) *testNode {
	t.Helper()
	return newTestNodeWith(t, disk, nil)
}

// newTestNodeWith is newTestNode with a hook that adjusts the config
// before the host starts.
func newTestNodeWith(t testing.TB, disk *Disk, adjust func(*P2PConfig)) *testNode {
	t.Helper()
	dir := t.TempDir()
	if disk == nil {
		disk = newTestDisk(t, DiskConfig{Dir: dir})
	}
	key, err := LoadOrCreateIdentity(filepath.Join(dir, "identity"))
	if err != nil {
		t.Fatal(err)
	}
	n := &testNode{disk: disk, mem: &members{ids: map[peer.ID]bool{}}, bad: &badPeers{}}
	cfg := P2PConfig{Identity: key, ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"},
		Allow: n.mem.allow, Disk: disk, OnBadPeer: n.bad.report, Logger: testLogger(t)}
	if adjust != nil {
		adjust(&cfg)
	}
	n.p2p, err = NewP2P(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.p2p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.p2p.Close(); err != nil {
			t.Error(err)
		}
	})
	return n
}

func (n *testNode) holder() Holder {
	return Holder{ID: n.p2p.ID().String(), Addrs: n.p2p.Addrs()}
}

func TestLoadOrCreateIdentity(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "identity")
	k1, err := LoadOrCreateIdentity(path)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := LoadOrCreateIdentity(path)
	if err != nil {
		t.Fatal(err)
	}
	if !k1.Equals(k2) {
		t.Fatal("reloaded a different key")
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("identity mode: %v %v", st.Mode(), err)
	}
	if err := os.WriteFile(path, []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateIdentity(path); err == nil {
		t.Fatal("accepted a junk identity")
	}
}

func TestP2P_Replicate(t *testing.T) {
	a, b := newTestNode(t, nil), newTestNode(t, nil)
	a.mem.add(b.p2p.ID())
	b.mem.add(a.p2p.ID())
	nar := makeNar(t, bytes.Repeat([]byte("p2p "), 40000))
	e := ingestEntry(t, a.disk, testPath, nar)
	want := e.Files[0]
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	t.Run("member fetches and verifies", func(t *testing.T) {
		f, err := b.p2p.Replicate(ctx, a.holder(), want)
		if err != nil {
			t.Fatal(err)
		}
		if f.Key() != want.Key() || !b.disk.Has(want.Key()) {
			t.Fatal("not stored")
		}
		rc, _, err := b.disk.OpenNar(want.Key())
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(readAll(t, rc), nar) {
			t.Fatal("replica differs")
		}
	})
	t.Run("missing file", func(t *testing.T) {
		missing := File{Compression: CompressionZstd, FileHash: sha([]byte("nope"))}
		if _, err := b.p2p.Replicate(ctx, a.holder(), missing); !errors.Is(err, ErrNotFound) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("non-member is refused", func(t *testing.T) {
		c := newTestNode(t, nil)
		c.mem.add(a.p2p.ID()) // c trusts a, but a does not know c
		_, err := c.p2p.Replicate(ctx, a.holder(), want)
		if err == nil {
			t.Fatal("non-member fetched a nar")
		}
		if c.disk.Has(want.Key()) {
			t.Fatal("non-member kept a nar")
		}
		if a.p2p.Host().Network().Connectedness(c.p2p.ID()) == network.Connected {
			t.Fatal("a keeps a connection to a non-member")
		}
		// and a member refuses to dial a non-member
		if _, _, err := a.p2p.Fetch(ctx, c.holder(), want); !errors.Is(err, ErrNotMember) {
			t.Fatalf("dial non-member: %v", err)
		}
	})
	t.Run("bare stranger is refused", func(t *testing.T) {
		// A host with no gater of its own, as an attacker would run.
		h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableMetrics())
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		h.Peerstore().AddAddrs(a.p2p.ID(), a.p2p.Host().Addrs(), time.Hour)
		if _, err := h.NewStream(ctx, a.p2p.ID(), NarProtocol); err == nil {
			t.Fatal("a stranger opened a nar stream")
		}
		if c := a.p2p.Host().Network().Connectedness(h.ID()); c != network.NotConnected {
			t.Fatalf("a keeps a %s connection to a stranger", c)
		}
	})
}

func TestP2P_BadPeer(t *testing.T) {
	nar := makeNar(t, bytes.Repeat([]byte("victim "), 20000))
	good := newTestDisk(t, DiskConfig{})
	e := ingestEntry(t, good, testPath, nar)
	want := e.Files[0]
	// The bad node stores different bytes under the good file's name.
	badDir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(badDir, "nar"), 0o755); err != nil {
		t.Fatal(err)
	}
	fh, _, err := good.Open(want.Key())
	if err != nil {
		t.Fatal(err)
	}
	raw := readAll(t, fh)
	raw[len(raw)/3] ^= 0x01
	if err := os.WriteFile(filepath.Join(badDir, "nar", filepath.Base(want.URL())), raw, 0o644); err != nil {
		t.Fatal(err)
	}
	a := newTestNode(t, newTestDisk(t, DiskConfig{Dir: badDir}))
	b := newTestNode(t, nil)
	a.mem.add(b.p2p.ID())
	b.mem.add(a.p2p.ID())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = b.p2p.Replicate(ctx, a.holder(), want)
	if !errors.Is(err, ErrHashMismatch) && !errors.Is(err, ErrCorrupt) {
		t.Fatalf("err = %v", err)
	}
	if b.disk.Has(want.Key()) || len(dirNames(t, b.disk.Dir())) != 0 {
		t.Fatal("kept bad bytes")
	}
	if ids := b.bad.list(); len(ids) != 1 || ids[0] != a.p2p.ID().String() {
		t.Fatalf("reported %v", ids)
	}
}

func TestHandler_FetchThroughP2P(t *testing.T) {
	a, b := newTestNode(t, nil), newTestNode(t, nil)
	a.mem.add(b.p2p.ID())
	b.mem.add(a.p2p.ID())
	nar := makeNar(t, bytes.Repeat([]byte("only on b "), 30000))
	e := ingestEntry(t, b.disk, testPath, nar)
	idx := NewMemIndex()
	idx.Put(e)
	idx.SetHolders(e.Files[0].Key(), []Holder{b.holder()})
	h, err := NewHandler(HandlerConfig{Disk: a.disk, Index: idx, Fetcher: a.p2p, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	srv := newServer(t, h)
	resp, body := get(t, srv, "GET", "/"+e.Files[0].URL())
	if resp.StatusCode != 200 || !sha(body).Equal(e.Files[0].FileHash) {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if !a.disk.Has(e.Files[0].Key()) {
		t.Fatal("a kept no copy")
	}
}

// makeBigNar builds a single-file NAR of n random bytes without touching
// the disk.
func makeBigNar(n int) []byte {
	str := func(b []byte, s []byte) []byte {
		var l [8]byte
		for i := range 8 {
			l[i] = byte(uint64(len(s)) >> (8 * i))
		}
		b = append(b, l[:]...)
		b = append(b, s...)
		return append(b, make([]byte, (8-len(s)%8)%8)...)
	}
	content := make([]byte, n)
	_, _ = rand.Read(content)
	var b []byte
	for _, s := range []string{"nix-archive-1", "(", "type", "regular", "contents"} {
		b = str(b, []byte(s))
	}
	b = str(b, content)
	return str(b, []byte(")"))
}

// BenchmarkP2P_Transfer100MB moves a 100 MB nar between two hosts on
// loopback: "raw" reads the stream, "replicate" also verifies and stores.
// benchNarDisk is a disk holding one uncompressed 100 MB nar, and its file.
func benchNarDisk(b *testing.B) (*Disk, File) {
	src := newTestDisk(b, DiskConfig{Compressions: []string{CompressionNone}})
	res, err := src.Ingest(context.Background(), bytes.NewReader(makeBigNar(100<<20)), Expect{})
	if err != nil {
		b.Fatal(err)
	}
	return src, res.Files[0]
}

// benchFetch fetches want from holder over and over, draining each stream.
func benchFetch(b *testing.B, from *P2P, holder Holder, want File) {
	b.SetBytes(want.FileSize)
	buf := make([]byte, copyBufSize)
	for b.Loop() {
		rc, _, err := from.Fetch(context.Background(), holder, want)
		if err != nil {
			b.Fatal(err)
		}
		n, err := io.CopyBuffer(io.Discard, rc, buf)
		rc.Close()
		if err != nil || n != want.FileSize {
			b.Fatalf("copied %d: %v", n, err)
		}
	}
}

func BenchmarkP2P_Transfer100MB(b *testing.B) {
	src, want := benchNarDisk(b)
	a, c := newTestNode(b, src), newTestNode(b, nil)
	a.mem.add(c.p2p.ID())
	c.mem.add(a.p2p.ID())
	ctx := context.Background()
	b.Run("raw", func(b *testing.B) { benchFetch(b, c.p2p, a.holder(), want) })
	b.Run("replicate", func(b *testing.B) {
		b.SetBytes(want.FileSize)
		for b.Loop() {
			if _, err := c.p2p.Replicate(ctx, a.holder(), want); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			if err := c.disk.Remove(want.Key()); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
	})
}
