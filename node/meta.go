package node

import (
	"context"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/drvmesh/drvmesh/gossip"
)

// version is the drvmesh version gossiped to peers.
var version = "0.1.0"

// meta is what this node gossips about itself.
func (n *Node) meta() gossip.Meta {
	running := 0
	if n.agent != nil {
		running = n.agent.Running()
	}
	m := gossip.Meta{
		Systems: n.cfg.Systems, Features: n.cfg.Features, MaxJobs: n.cfg.MaxJobs, Running: running,
		Load: loadAvg(), FreeDisk: freeDisk(n.cfg.DataDir),
		HTTP: n.httpAdvertise(), Raft: n.clusterAdvertise(), Version: version, Builder: n.cfg.Builder,
	}
	if n.cfg.Builder == "none" {
		m.MaxJobs = 0
	}
	if n.p2p != nil {
		m.P2P = n.p2pAddr()
		m.PeerID = n.p2p.ID().String()
	}
	return m
}

// pushMeta asks for the current meta to be gossiped soon, without
// waiting: memberlist's UpdateNode blocks until the next gossip round,
// which must not hold up the worker.
func (n *Node) pushMeta() {
	select {
	case n.metaKick <- struct{}{}:
	default:
	}
}

// sendMeta gossips the current meta if gossip runs; it may block for a
// gossip interval.
func (n *Node) sendMeta() {
	if n.gossip == nil {
		return
	}
	if err := n.gossip.SetMeta(n.meta()); err != nil {
		n.log.Debug("gossip meta", keyErr, err)
	}
}

// metaLoop keeps this node's record and gossip meta current: the
// admission record once a leader is known (addresses may change across
// restarts), the meta every few seconds (load, disk), and the peers file.
func (n *Node) metaLoop(ctx context.Context) {
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
		case <-n.metaKick:
			n.sendMeta()
			lastMeta = time.Now()
			continue
		}
		if !recorded {
			if leader, _ := n.raft.Leader(); leader != "" {
				rec, _ := n.raft.State().Node(n.cfg.Name)
				want := n.httpAdvertise()
				if rec == nil || rec.HTTP != want || rec.P2P != n.p2pAddr() || rec.Raft != n.clusterAdvertise() || rec.PeerID != n.p2p.ID().String() {
					voter := rec != nil && rec.Voter
					actx, cancel := context.WithTimeout(ctx, 5*time.Second)
					recorded = n.recordSelf(actx, voter) == nil
					cancel()
				} else {
					recorded = true
				}
			}
		}
		n.peers.Save()
		if !indexed && n.raft.AppliedIndex() > 0 {
			n.keep.IndexOwnFiles()
			indexed = true
		}
		if time.Since(lastQuota) > n.cfg.quotaInterval {
			n.keep.EnforceQuota(ctx)
			lastQuota = time.Now()
		}
		if time.Since(lastMeta) > 3*time.Second {
			n.sendMeta()
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
