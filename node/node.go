package node

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"

	"github.com/drvmesh/drvmesh/builder"
	"github.com/drvmesh/drvmesh/consensus"
	"github.com/drvmesh/drvmesh/gossip"
	"github.com/drvmesh/drvmesh/narcache"
	"github.com/drvmesh/drvmesh/node/agent"
	"github.com/drvmesh/drvmesh/node/cluster"
	"github.com/drvmesh/drvmesh/node/httpapi"
	"github.com/drvmesh/drvmesh/node/leader"
)

// Node is one member of a drvmesh mesh.
type Node struct {
	cfg     Config
	log     *slog.Logger
	metrics *metrics

	// Bootstrapped is set when Start made a new mesh; AdminToken and
	// JoinCommand are then what to tell the operator.
	Bootstrapped bool
	AdminToken   string

	// The cluster room: identity, the cluster port, forwarding, peers.
	creds     *cluster.Creds
	clusterLn net.Listener
	mux       *cluster.Mux
	rpcSrv    *http.Server
	rpcRooms  lateHandler // the rooms' RPC routes, once they exist
	fwd       *cluster.Forwarder
	peers     *cluster.Peers

	// The parts the rooms share: the replicated state, gossip, the nar
	// store with its peer-to-peer side and binary cache, the builder.
	raft    *consensus.Raft
	gossip  *gossip.Gossip
	disk    *narcache.Disk
	p2p     *narcache.P2P
	cache   *narcache.Handler
	builder builder.Builder

	// The adapters node fills the rooms' interfaces with.
	files    *narFiles
	presence *presence

	// The rooms: the public API, the building agent and the keeper of
	// copies, the leader's duties (leaderStopped is closed when their
	// loop has returned).
	httpLn        net.Listener
	httpSrv       *http.Server
	api           *httpapi.API
	agent         *agent.Agent
	keep          *agent.Keeper
	leader        *leader.Leader
	leaderStopped chan struct{}

	// run is the node's run context: every goroutine the node starts
	// derives from it, and cancel ends it when the node stops.
	run      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	stopOnce sync.Once
}

// New checks the configuration. It starts nothing.
func New(cfg Config) (*Node, error) {
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, log: cfg.Logger.With(keyNode, cfg.Name), metrics: newMetrics()}
	n.files = &narFiles{n: n, keys: map[string]string{}}
	n.presence = &presence{n: n, kick: make(chan struct{}, 1)}
	return n, nil
}

// Name is the node's name.
func (n *Node) Name() string { return n.cfg.Name }

// HTTPAddr is the address the HTTP API listens on (after Start).
func (n *Node) HTTPAddr() string { return n.httpLn.Addr().String() }

// URL is the node's advertised HTTP base URL.
func (n *Node) URL() string { return "http://" + n.cfg.advertised(n.httpLn.Addr().String()) }

// JoinToken is the mesh's join token, as this node knows it.
func (n *Node) JoinToken() string { return n.creds.Secrets.JoinToken }

// PublicKey is the Nix public key line of the mesh.
func (n *Node) PublicKey() string { return n.creds.Signer.Public().String() }

// Start brings the node up: bootstrap, join or resume, then every service.
// It returns once the node serves HTTP; the mesh may still be electing.
func (n *Node) Start(ctx context.Context) error {
	if err := os.MkdirAll(n.cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	resumed, err := cluster.HasState(n.cfg.DataDir)
	if err != nil {
		return err
	}
	if err := n.listen(); err != nil {
		return err
	}
	ok := false
	defer func() {
		if !ok {
			n.closeListeners()
		}
	}()
	bootstrap := false
	switch {
	case resumed:
		if err := n.loadState(); err != nil {
			return err
		}
	case len(n.cfg.Join) > 0:
		err := cluster.Join(ctx, cluster.JoinConfig{
			DataDir: n.cfg.DataDir, Name: n.cfg.Name, Addrs: n.cfg.Join, Token: n.cfg.JoinToken,
			HTTP: n.httpAdvertise(), Cluster: n.clusterAdvertise(), Gossip: n.gossipAdvertise(), Log: n.log,
		})
		if err != nil {
			return err
		}
		if err := n.loadState(); err != nil {
			return err
		}
	default:
		if err := n.bootstrapMesh(); err != nil {
			return err
		}
		bootstrap = true
	}
	if err := n.startServices(ctx, bootstrap); err != nil {
		n.stopServices()
		return err
	}
	ok = true
	return nil
}

// listen opens the HTTP and cluster listeners, so their real addresses
// (port 0 in tests) are known before joining.
func (n *Node) listen() error {
	ln, err := net.Listen("tcp", n.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s (HTTP): %w; pick another --listen", n.cfg.Listen, err)
	}
	n.httpLn = ln
	cl, err := net.Listen("tcp", n.cfg.ClusterListen)
	if err != nil {
		ln.Close()
		return fmt.Errorf("listen on %s (cluster): %w; pick another --listen or --cluster-listen", n.cfg.ClusterListen, err)
	}
	n.clusterLn = cl
	return nil
}

func (n *Node) closeListeners() {
	if n.httpLn != nil {
		n.httpLn.Close()
	}
	if n.clusterLn != nil {
		n.clusterLn.Close()
	}
}

// addrs are this node's advertised addresses.
func (n *Node) httpAdvertise() string    { return n.cfg.advertised(n.httpLn.Addr().String()) }
func (n *Node) clusterAdvertise() string { return n.cfg.advertised(n.clusterLn.Addr().String()) }
func (n *Node) gossipAdvertise() string {
	if n.gossip != nil {
		if a := n.gossip.LocalAddr(); a != "" {
			return a
		}
	}
	return n.cfg.advertised(n.cfg.GossipListen)
}

// bootstrapMesh creates a new mesh: its secrets, this node's identity and
// the tokens, written to the data dir.
func (n *Node) bootstrapMesh() error {
	tok, err := cluster.Bootstrap(cluster.BootstrapConfig{DataDir: n.cfg.DataDir, Name: n.cfg.Name, GuixKey: n.cfg.GuixKey})
	if err != nil {
		return err
	}
	n.AdminToken, n.Bootstrapped = tok, true
	return n.loadState()
}

// loadState reads the mesh secrets and node identity from the data dir.
func (n *Node) loadState() error {
	dir := n.cfg.DataDir
	name, err := cluster.NodeName(dir)
	if err != nil {
		return err
	}
	if name != n.cfg.Name && n.cfg.Name != DefaultConfig().Name {
		return fmt.Errorf("%w: %s belongs to node %q, not %q; use --name %s or another --data-dir", ErrConfig, dir, name, n.cfg.Name, name)
	}
	n.cfg.Name = name
	n.log = n.cfg.Logger.With(keyNode, name)
	n.creds, err = cluster.Load(dir)
	return err
}

// Close stops the node gracefully: hands back its builds, transfers
// leadership, leaves gossip, and stops every service.
func (n *Node) Close() error {
	n.stopOnce.Do(func() {
		n.leaveGracefully()
		n.stopServices()
	})
	return nil
}

// Kill stops the node at once, as a crash would: no hand-back, no
// leadership transfer, no gossip leave. For tests.
func (n *Node) Kill() {
	n.stopOnce.Do(func() {
		n.stopServices()
	})
}
