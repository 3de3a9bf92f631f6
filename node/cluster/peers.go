package cluster

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/drvmesh/drvmesh/api"
	"github.com/drvmesh/drvmesh/consensus"
	"github.com/drvmesh/drvmesh/gossip"
)

const filePeers = "node/peers.json"

// Members is the gossip view the cluster reads.
type Members interface {
	Members() []gossip.Member
}

// Peers keeps the gossip addresses to rejoin through: the peers file in
// the data dir, the members alive now, and the members the replicated
// state knows.
type Peers struct {
	dataDir string
	name    string
	gossip  Members
	self    func() string // this node's gossip address
	state   func() *consensus.FSM
	rpc     *http.Client // the cluster port's mutual-TLS client
	saved   string       // the peers file's content, to write it only on change
}

// NewPeers keeps the peers of the node name; rpc reaches the members'
// cluster ports.
func NewPeers(dataDir, name string, g Members, self func() string, state func() *consensus.FSM, rpc *http.Client) *Peers {
	return &Peers{dataDir: dataDir, name: name, gossip: g, self: self, state: state, rpc: rpc}
}

// NodesRoute is the cluster port's copy of GET /api/v1/nodes: members ask
// it over mutual TLS, as the public one may need the admin token.
const NodesRoute = "/rpc/nodes"

// Live are the gossip addresses of the members alive now,
// this node first.
func (p *Peers) Live() []string {
	addrs := []string{p.self()}
	for _, m := range p.gossip.Members() {
		if m.Status == gossip.StatusAlive && m.Name != p.name {
			addrs = append(addrs, m.Addr)
		}
	}
	return addrs
}

// Known are the addresses to join gossip through: those saved
// in the peers file, without this node.
func (p *Peers) Known() []string {
	var addrs []string
	b, err := os.ReadFile(filepath.Join(p.dataDir, filePeers))
	if err == nil {
		_ = json.Unmarshal(b, &addrs)
	}
	self := p.self()
	out := addrs[:0]
	for _, a := range addrs {
		if a != self {
			out = append(out, a)
		}
	}
	return out
}

// Save remembers the alive members' gossip addresses for the next
// start, when they changed.
func (p *Peers) Save() {
	var addrs []string
	for _, m := range p.gossip.Members() {
		if m.Name != p.name && m.Status == gossip.StatusAlive {
			addrs = append(addrs, m.Addr)
		}
	}
	if len(addrs) == 0 {
		return
	}
	sort.Strings(addrs)
	key := strings.Join(addrs, " ")
	if key == p.saved {
		return
	}
	if err := WriteJSONFile(p.dataDir, filePeers, addrs); err == nil {
		p.saved = key
	}
}

// FromState asks the members this node's replicated state knows for
// their gossip addresses: the way back in when the peers file is stale.
func (p *Peers) FromState(ctx context.Context) []string {
	recs, err := p.state().Nodes()
	if err != nil {
		return nil
	}
	var addrs []string
	for _, rec := range recs {
		// The address is the member's own text: ask only a host:port,
		// never a URL it made up (the cluster port over mutual TLS).
		if rec.Name == p.name || !isHostPort(rec.Raft) {
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		req, _ := http.NewRequestWithContext(rctx, http.MethodGet, "http://"+rec.Raft+NodesRoute, nil)
		resp, err := p.rpc.Do(req)
		if err == nil {
			var nodes []api.Node
			if json.NewDecoder(resp.Body).Decode(&nodes) == nil {
				for _, nd := range nodes {
					if nd.Name != p.name && nd.Gossip != "" && nd.Status == api.NodeAlive {
						addrs = append(addrs, nd.Gossip)
					}
				}
			}
			resp.Body.Close()
		}
		cancel()
		if len(addrs) > 0 {
			return addrs
		}
	}
	return nil
}
