package node

import (
	"context"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/drvmesh/drvmesh/consensus"
	"github.com/drvmesh/drvmesh/gossip"
	"github.com/drvmesh/drvmesh/narcache"
	"github.com/drvmesh/drvmesh/node/agent"
	"github.com/drvmesh/drvmesh/store"
)

// startCache opens the nar store, the libp2p host and the binary cache
// handler.
func (n *Node) startCache(ctx context.Context) error {
	var err error
	n.disk, err = narcache.NewDisk(narcache.DiskConfig{
		Dir:     filepath.Join(n.cfg.DataDir, dirNars),
		Quota:   n.cfg.QuotaBytes,
		Holders: holdersView{n},
		// Keep MinCopies: evict only what enough other nodes hold.
		MinOtherHolders: max(1, n.cfg.MinCopies-1),
		Logger:          n.log.With("component", "narcache"),
	})
	if err != nil {
		return err
	}
	id, err := narcache.LoadOrCreateIdentity(filepath.Join(n.cfg.DataDir, fileP2PKey))
	if err != nil {
		return err
	}
	var relays []peer.AddrInfo
	for _, r := range n.cfg.RelayPeers {
		ai, err := peer.AddrInfoFromString(r)
		if err != nil {
			return fmt.Errorf("%w: relay %q: %v", ErrConfig, r, err)
		}
		relays = append(relays, *ai)
	}
	n.p2p, err = narcache.NewP2P(narcache.P2PConfig{
		Identity:    id,
		ListenAddrs: []string{multiaddrOf(n.cfg.P2PListen)},
		Allow:       n.allowPeer,
		Disk:        n.disk,
		OnBadPeer:   n.badPeer,
		NATPortMap:  len(relays) > 0,
		// Any member may fetch from one behind NAT over a relay; DCUtR
		// then turns the relayed connection into a direct one when it can,
		// and needs both ends.
		HolePunching: true,
		Relays:       relays,
		RelayService: n.cfg.RelayService,
		// Relays are for nodes behind NAT: announce the relay address.
		ForcePrivate: len(relays) > 0,
		Logger:       n.log.With("component", "p2p"),
	})
	if err != nil {
		return err
	}
	if err := n.p2p.Start(ctx); err != nil {
		return fmt.Errorf("%w; pick another --listen or --p2p-listen", err)
	}
	n.announceRelay(ctx)
	n.cache, err = narcache.NewHandler(narcache.HandlerConfig{
		StoreDir:  n.cfg.StoreDir,
		Disk:      n.disk,
		Index:     indexView{n},
		Fetcher:   n.p2p,
		Logs:      logsView{n},
		OnBadPeer: n.badPeer,
		GuixKey:   n.creds.Guix,
		GuixHost:  n.cfg.Name,
		// Narinfos change only when a nar gains a form or a signature:
		// serve a rendering for a second before asking the index again.
		NarInfoRecheck: time.Second,
		Logger:         n.log.With("component", "cache"),
	})
	return err
}

// relayWait bounds how long a node behind NAT waits at start for a relay
// reservation, so that the address it records is one members can reach.
const relayWait = 10 * time.Second

// announceRelay logs what an operator needs for the relay side: on a
// relay, the --relays value for members behind NAT; on a node behind NAT,
// whether a relay holds a slot for it yet.
func (n *Node) announceRelay(ctx context.Context) {
	id := n.p2p.ID().String()
	if n.cfg.RelayService {
		var addrs []string
		for _, a := range n.p2p.Addrs() {
			if !strings.Contains(a, "/p2p-circuit") {
				addrs = append(addrs, a+"/p2p/"+id)
			}
		}
		n.log.Info("circuit relay running for members behind NAT; they join with --relays ADDR",
			"addrs", strings.Join(addrs, ","))
	}
	if len(n.cfg.RelayPeers) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, relayWait)
	defer cancel()
	if err := n.p2p.WaitReserved(ctx); err != nil {
		n.log.Warn("no relay reservation yet; members cannot fetch from this node until one holds", keyErr, err)
		return
	}
	n.log.Info("reachable through a relay", "p2p", n.p2p.Addrs()[0]+"/p2p/"+id)
}

func (n *Node) badPeer(peerID string, err error) {
	n.log.Warn("peer sent bad nar bytes; refused", keyPeer, peerID, keyErr, err)
	n.metrics.badPeers.Inc()
}

// multiaddrOf turns host:port into a TCP multiaddr.
func multiaddrOf(hostport string) string {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return "/ip4/0.0.0.0/tcp/0"
	}
	if ip := net.ParseIP(host); ip != nil {
		if ip.To4() != nil {
			return "/ip4/" + host + "/tcp/" + port
		}
		return "/ip6/" + host + "/tcp/" + port
	}
	if host == "" {
		return "/ip4/0.0.0.0/tcp/" + port
	}
	return "/dns4/" + host + "/tcp/" + port
}

// indexView is the binary cache's read view of the replicated nar index.
type indexView struct{ n *Node }

func (v indexView) Lookup(hashPart string) (narcache.Entry, bool) {
	ni, err := v.n.raft.State().NarInfoByHash(hashPart)
	if err != nil || ni == nil || len(ni.Files) == 0 {
		return narcache.Entry{}, false
	}
	info, files, err := agent.StoreNarInfo(ni)
	if err != nil {
		v.n.log.Warn("bad narinfo in the index", keyPath, ni.StorePath, keyErr, err)
		return narcache.Entry{}, false
	}
	v.n.files.Note(ni)
	return narcache.Entry{Info: info, Files: files, Version: narInfoVersion(ni)}, true
}

// Version answers as Lookup would, without building the entry, so the
// handler re-renders a cached narinfo only when it changed.
func (v indexView) Version(hashPart string) (uint64, bool) {
	ni, err := v.n.raft.State().NarInfoByHash(hashPart)
	if err != nil || ni == nil || len(ni.Files) == 0 {
		return 0, false
	}
	return narInfoVersion(ni), true
}

var _ narcache.VersionIndex = indexView{}

func (v indexView) Holders(key string) []narcache.Holder {
	return v.n.files.Holders(key)
}

// narInfoVersion changes whenever what a narinfo renders changes.
func narInfoVersion(ni *consensus.NarInfo) uint64 {
	var h uint64 = 1469598103934665603
	mix := func(s string) {
		for i := 0; i < len(s); i++ {
			h ^= uint64(s[i])
			h *= 1099511628211
		}
	}
	for _, f := range ni.Files {
		mix(f.FileHash)
		mix(f.Compression)
	}
	for _, s := range ni.Sigs {
		mix(s)
	}
	mix(ni.NarHash)
	return h
}

// narFiles maps nar file keys to the store path hash parts they belong
// to, and names the other holders of a file: the agent's, the API's and
// the binary cache's view of the nar index by file.
type narFiles struct {
	n    *Node
	mu   sync.Mutex
	keys map[string]string // nar file key → store path hash part
}

// Holders lists the other nodes that hold the nar file with this key,
// alive ones with free capacity first.
func (f *narFiles) Holders(key string) []narcache.Holder {
	st := f.n.raft.State()
	hashPart, ok := f.HashPart(key)
	if !ok {
		return nil
	}
	ni, err := st.NarInfoByHash(hashPart)
	if err != nil || ni == nil {
		return nil
	}
	nodes, _ := st.Nodes()
	byName := map[string]consensus.Node{}
	for _, nd := range nodes {
		byName[nd.Name] = nd
	}
	type cand struct {
		h     narcache.Holder
		alive bool
		load  float64
	}
	var cs []cand
	for _, name := range ni.Holders {
		if name == f.n.cfg.Name {
			continue
		}
		nd, ok := byName[name]
		if !ok || nd.PeerID == "" {
			continue
		}
		c := cand{h: narcache.Holder{ID: nd.PeerID, Addrs: []string{nd.P2P}}}
		if m, ok := f.n.gossip.Member(name); ok {
			c.alive = m.Status == gossip.StatusAlive
			c.load = m.Meta.Load
			if m.Meta.P2P != "" {
				c.h.Addrs = []string{m.Meta.P2P}
			}
		}
		cs = append(cs, c)
	}
	sort.SliceStable(cs, func(i, j int) bool {
		if cs[i].alive != cs[j].alive {
			return cs[i].alive
		}
		return cs[i].load < cs[j].load
	})
	out := make([]narcache.Holder, len(cs))
	for i, c := range cs {
		out[i] = c.h
	}
	return out
}

// HashPart maps a nar file key to the store path hash part it belongs
// to: from a small memory map of the narinfos this node has seen, else
// from the replicated file index.
func (f *narFiles) HashPart(key string) (string, bool) {
	f.mu.Lock()
	h, ok := f.keys[key]
	f.mu.Unlock()
	if ok || f.n.raft == nil {
		return h, ok
	}
	ni, err := f.n.raft.State().NarInfoByFile(key)
	if err != nil || ni == nil {
		return "", false
	}
	f.Note(ni)
	hp, err := consensus.HashPart(ni.StorePath)
	return hp, err == nil
}

// Note remembers the file keys of a narinfo.
func (f *narFiles) Note(ni *consensus.NarInfo) {
	hp, err := consensus.HashPart(ni.StorePath)
	if err != nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, nf := range ni.Files {
		if fh, err := store.ParseHash(nf.FileHash); err == nil {
			f.keys[fh.Nix32()] = hp
		}
	}
}

// holdersView counts other holders for quota eviction.
type holdersView struct{ n *Node }

// OtherHolders counts only holders gossip sees alive: a copy on a dead
// node is no copy.
func (v holdersView) OtherHolders(key string) int {
	n := v.n
	if n.raft == nil || n.gossip == nil {
		return 0
	}
	hp, ok := n.files.HashPart(key)
	if !ok {
		return 0
	}
	ni, err := n.raft.State().NarInfoByHash(hp)
	if err != nil || ni == nil {
		return 0
	}
	c := 0
	for _, h := range ni.Holders {
		if h == n.cfg.Name {
			continue
		}
		if m, ok := n.gossip.Member(h); ok && m.Status == gossip.StatusAlive {
			c++
		}
	}
	return c
}

// logsView serves build logs: from this node's disk, or from the node
// that ran the build.
type logsView struct{ n *Node }

func (v logsView) OpenLog(ctx context.Context, drvBase string) (io.ReadCloser, error) {
	return v.n.api.OpenDrvLog(ctx, drvBase)
}
