package node

import (
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/drvmesh/drvmesh/consensus"
	"github.com/drvmesh/drvmesh/gossip"
	"github.com/drvmesh/drvmesh/node/cluster"
)

// presence is how this node makes itself known: the meta it gossips
// (kept current, and sent at once when kicked), its admission record,
// joining gossip, and the peers file and own-nar index kept on the way.
type presence struct {
	n *Node
	// kick asks the loop to gossip the meta now (see push).
	kick chan struct{}
}

// version is the drvmesh version gossiped to peers.
var version = "0.1.0"

// meta is what this node gossips about itself.
func (p *presence) meta() gossip.Meta {
	running := 0
	if p.n.agent != nil {
		running = p.n.agent.Running()
	}
	m := gossip.Meta{
		Systems: p.n.cfg.Systems, Features: p.n.cfg.Features, MaxJobs: p.n.cfg.MaxJobs, Running: running,
		Load: loadAvg(), FreeDisk: freeDisk(p.n.cfg.DataDir),
		HTTP: p.n.httpAdvertise(), Raft: p.n.clusterAdvertise(), Version: version, Builder: p.n.cfg.Builder,
	}
	if p.n.cfg.Builder == "none" {
		m.MaxJobs = 0
	}
	if p.n.p2p != nil {
		m.P2P = p.p2pAddr()
		m.PeerID = p.n.p2p.ID().String()
	}
	return m
}

// push asks for the current meta to be gossiped soon, without
// waiting: memberlist's UpdateNode blocks until the next gossip round,
// which must not hold up the agent.
func (p *presence) push() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// send gossips the current meta if gossip runs; it may block for a
// gossip interval.
func (p *presence) send() {
	if p.n.gossip == nil {
		return
	}
	if err := p.n.gossip.SetMeta(p.meta()); err != nil {
		p.n.log.Debug("gossip meta", keyErr, err)
	}
}

// loop keeps this node's record and gossip meta current: the
// admission record once a leader is known (addresses may change across
// restarts), the meta every few seconds (load, disk), and the peers file.
func (p *presence) loop(ctx context.Context) {
	recorded := false
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	lastMeta := time.Now()
	lastQuota := time.Now()
	indexed := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-p.kick:
			p.send()
			lastMeta = time.Now()
			continue
		}
		if !recorded {
			recorded = p.recordSelf(ctx)
		}
		p.n.peers.Save()
		if !indexed && p.n.raft.AppliedIndex() > 0 {
			p.n.keep.IndexOwnFiles()
			indexed = true
		}
		if time.Since(lastQuota) > p.n.cfg.quotaInterval {
			p.n.keep.EnforceQuota(ctx)
			lastQuota = time.Now()
		}
		if time.Since(lastMeta) > 3*time.Second {
			p.send()
			lastMeta = time.Now()
		}
	}
}

func loadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

func freeDisk(dir string) uint64 {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0
	}
	return st.Bavail * uint64(st.Bsize)
}

// recordSelf keeps the addresses of this node's record current (they
// may change across restarts) once a leader is known, and reports
// whether it is done: its record holds them, or the leader refused the
// change for good (logged once; asking again would be refused again).
// A node writes only the addresses of its own record, which the join
// path made: until that record reached this node there is nothing to do.
// A record from before fingerprints were checked also gets this node's
// certificate fingerprint, written as an admin (cluster.LegacyRecord).
func (p *presence) recordSelf(ctx context.Context) bool {
	if leader, _ := p.n.raft.Leader(); leader == "" {
		return false
	}
	rec, err := p.n.raft.State().Node(p.n.cfg.Name)
	if err != nil || rec == nil {
		return false
	}
	role, want := cluster.RoleNode, *rec
	if fixed, ok := p.n.creds.LegacyRecord(rec); ok {
		role, want = cluster.RoleAdmin, fixed
	}
	want.HTTP, want.Raft, want.P2P = p.n.httpAdvertise(), p.n.clusterAdvertise(), p.p2pAddr()
	if want == *rec {
		return true
	}
	actx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err = p.n.fwd.As(role).ApplyAndCatchUp(actx, &consensus.PutNode{Node: want})
	if errors.Is(err, consensus.ErrUnauthorized) || errors.Is(err, consensus.ErrBadCommand) {
		p.n.log.Warn("record own addresses refused", keyErr, err)
		return true
	}
	return err == nil
}

// joinGossip joins the known members' gossip until it succeeds: the
// addresses come from the join grant or, on restart, from the peers file.
func (p *presence) joinGossip(ctx context.Context) {
	wait := 100 * time.Millisecond
	for attempt := 0; ; attempt++ {
		addrs := p.n.peers.Known()
		if attempt%2 == 1 || len(addrs) == 0 {
			addrs = append(addrs, p.n.peers.FromState(ctx)...)
		}
		if len(addrs) > 0 {
			if _, err := p.n.gossip.Join(addrs); err == nil {
				return
			} else {
				p.n.log.Debug("gossip join", keyErr, err)
			}
		} else if p.bootstrappedHere() {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		if wait < 5*time.Second {
			wait *= 2
		}
	}
}

// p2pAddr is this node's libp2p multiaddr with its peer id.
func (p *presence) p2pAddr() string {
	if p.n.p2p == nil {
		return ""
	}
	addrs := p.n.p2p.Addrs()
	if len(addrs) == 0 {
		return ""
	}
	return addrs[0]
}

// bootstrappedHere reports whether this node made the mesh and no other
// node was ever admitted: then there is nobody to join.
func (p *presence) bootstrappedHere() bool {
	recs, err := p.n.raft.State().Nodes()
	return err == nil && len(recs) <= 1
}
