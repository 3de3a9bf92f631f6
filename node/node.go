package node

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/drvmesh/drvmesh/builder"
	"github.com/drvmesh/drvmesh/consensus"
	"github.com/drvmesh/drvmesh/gossip"
	"github.com/drvmesh/drvmesh/narcache"
	"github.com/drvmesh/drvmesh/store"
)

// Node is one member of a drvmesh mesh.
type Node struct {
	cfg Config
	log *slog.Logger

	secrets   meshSecrets
	ca        *CA
	signer    store.SecretKey
	guix      *store.GuixSecretKey
	serverTLS *tls.Config
	clientTLS *tls.Config
	dialer    *clusterDialer
	rpc       *http.Client

	httpLn    net.Listener
	clusterLn net.Listener
	mux       *muxListener
	httpSrv   *http.Server
	rpcSrv    *http.Server

	raft    *consensus.Raft
	gossip  *gossip.Gossip
	disk    *narcache.Disk
	p2p     *narcache.P2P
	cache   *narcache.Handler
	builder builder.Builder

	// Bootstrapped is set when Start made a new mesh; AdminToken and
	// JoinCommand are then what to tell the operator.
	Bootstrapped bool
	AdminToken   string

	filesMu sync.Mutex
	files   map[string]string // nar file key → store path hash part

	savedPeers string // the peers file's content, to write it only on change

	jobsMu sync.Mutex
	jobs   map[string]*job // running builds by id
	// reported holds builds whose result this node reported, by id, with
	// the attempt it ran, until the state here shows that attempt (see
	// pickUp).
	reported map[string]int
	// metaKick asks metaLoop to gossip the meta now (see pushMeta).
	metaKick chan struct{}

	// hookRan holds the events whose hook ran here but whose
	// acknowledgement did not commit: leading again, this node
	// acknowledges them without running the hook a second time.
	hookRan map[uint64]bool
	// leaderStopped is closed when the leader loop has returned.
	leaderStopped chan struct{}
	// sched is the scheduler state of the current term while leading.
	sched atomic.Pointer[leaderPlanner]

	stopOnce sync.Once
	// run is the node's run context: every goroutine the node starts
	// derives from it, and cancel ends it when the node stops.
	run      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	metrics  *metrics
	started  time.Time
}

// New checks the configuration. It starts nothing.
func New(cfg Config) (*Node, error) {
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	return &Node{cfg: cfg, log: cfg.Logger.With(keyNode, cfg.Name), jobs: map[string]*job{}, reported: map[string]int{}, metaKick: make(chan struct{}, 1), hookRan: map[uint64]bool{}, files: map[string]string{}, metrics: newMetrics()}, nil
}

// Name is the node's name.
func (n *Node) Name() string { return n.cfg.Name }

// HTTPAddr is the address the HTTP API listens on (after Start).
func (n *Node) HTTPAddr() string { return n.httpLn.Addr().String() }

// URL is the node's advertised HTTP base URL.
func (n *Node) URL() string { return "http://" + n.cfg.advertised(n.httpLn.Addr().String()) }

// JoinToken is the mesh's join token, as this node knows it.
func (n *Node) JoinToken() string { return n.secrets.JoinToken }

// PublicKey is the Nix public key line of the mesh.
func (n *Node) PublicKey() string { return n.signer.Public().String() }

// Start brings the node up: bootstrap, join or resume, then every service.
// It returns once the node serves HTTP; the mesh may still be electing.
func (n *Node) Start(ctx context.Context) error {
	n.started = time.Now()
	if err := os.MkdirAll(n.cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	resumed, err := hasState(n.cfg.DataDir)
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
		if err := n.joinMesh(ctx); err != nil {
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
	meshID := randomID()
	ca, err := newCA(meshID)
	if err != nil {
		return err
	}
	sk, err := store.GenerateKey("drvmesh-" + meshID)
	if err != nil {
		return err
	}
	gk := make([]byte, 32)
	if _, err := randRead(gk); err != nil {
		return err
	}
	sec := meshSecrets{
		MeshID: meshID, CACert: string(ca.CertPEM), CAKey: string(ca.KeyPEM()),
		GossipKey: gk, SigningKey: sk.String(), JoinToken: randomToken("dmj1.", 24),
	}
	if n.cfg.GuixKey {
		gk, err := store.GenerateGuixKey()
		if err != nil {
			return err
		}
		sec.GuixKey = string(gk.SecretKeyText())
	}
	key, err := newNodeKey()
	if err != nil {
		return err
	}
	cert, err := ca.Issue(n.cfg.Name, &key.PublicKey)
	if err != nil {
		return err
	}
	n.AdminToken = randomToken("dma1.", 24)
	n.Bootstrapped = true
	for _, f := range []struct {
		rel  string
		data []byte
	}{
		{fileNodeKey, keyPEM(key)},
		{fileNodeCert, cert},
		{fileJoinToken, []byte(sec.JoinToken + "\n")},
		{fileAdminToken, []byte(n.AdminToken + "\n")},
	} {
		if err := writeSecretFile(n.cfg.DataDir, f.rel, f.data); err != nil {
			return fmt.Errorf("write %s: %w", f.rel, err)
		}
	}
	if err := writeJSONFile(n.cfg.DataDir, fileSecrets, sec); err != nil {
		return err
	}
	// The identity is written last: a crash before it leaves no half node.
	if err := writeJSONFile(n.cfg.DataDir, fileIdentity, identity{Name: n.cfg.Name}); err != nil {
		return err
	}
	return n.loadState()
}

// loadState reads the mesh secrets and node identity from the data dir.
func (n *Node) loadState() error {
	dir := n.cfg.DataDir
	var id identity
	if err := readJSONFile(dir, fileIdentity, &id); err != nil {
		return err
	}
	if id.Name != n.cfg.Name && n.cfg.Name != DefaultConfig().Name {
		return fmt.Errorf("%w: %s belongs to node %q, not %q; use --name %s or another --data-dir", ErrConfig, dir, id.Name, n.cfg.Name, id.Name)
	}
	n.cfg.Name = id.Name
	n.log = n.cfg.Logger.With(keyNode, id.Name)
	if err := readJSONFile(dir, fileSecrets, &n.secrets); err != nil {
		return err
	}
	ca, err := parseCA([]byte(n.secrets.CACert), []byte(n.secrets.CAKey))
	if err != nil {
		return err
	}
	n.ca = ca
	n.signer, err = store.ParseSecretKey(n.secrets.SigningKey)
	if err != nil {
		return fmt.Errorf("%w: signing key: %v", ErrBadSecrets, err)
	}
	if n.secrets.GuixKey != "" {
		gk, err := store.ParseGuixSecretKey([]byte(n.secrets.GuixKey))
		if err != nil {
			return fmt.Errorf("%w: guix key: %v", ErrBadSecrets, err)
		}
		n.guix = &gk
	}
	certPEM, err := os.ReadFile(filepath.Join(dir, fileNodeCert))
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadSecrets, err)
	}
	keyBytes, err := os.ReadFile(filepath.Join(dir, fileNodeKey))
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadSecrets, err)
	}
	n.serverTLS, n.clientTLS, err = tlsConfigs(ca, certPEM, keyBytes)
	if err != nil {
		return err
	}
	n.dialer = &clusterDialer{conf: n.clientTLS}
	n.rpc = n.dialer.rpcClient()
	return nil
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

var errStopped = errors.New("node stopped")
