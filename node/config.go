package node

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime"
	"strconv"
	"time"

	"github.com/drvmesh/drvmesh/node/httpapi"

	"github.com/drvmesh/drvmesh/builder"
)

// Config is everything a node needs to start. Zero values take the
// defaults of DefaultConfig where noted.
type Config struct {
	// DataDir holds the mesh secrets, the node identity, the raft log and
	// snapshots, the nar store and build logs.
	DataDir string
	// Name is this node's name in the mesh (default: the host name).
	Name string
	// Listen is the HTTP address (API, binary cache, web page, /metrics).
	Listen string
	// ClusterListen (raft and RPC over mutual TLS), GossipListen and
	// P2PListen default to the HTTP port + 1, + 2 and + 3.
	ClusterListen, GossipListen, P2PListen string
	// Advertise is the host other nodes use to reach this one (default: the
	// listen host, or 127.0.0.1 for a wildcard listen).
	Advertise string
	// Join lists member HTTP addresses to join through (first run only).
	Join []string
	// JoinToken proves the right to join (first run only).
	JoinToken string
	// Builder is "nix", "guix" or "none".
	Builder string
	// NixStore is the Nix store URI the nix builder uses ("" = default).
	NixStore string
	// StoreDir is the store directory of the mesh (/nix/store, /gnu/store).
	StoreDir string
	// Systems this node builds for (default: the host's).
	Systems []string
	// Features this node offers (e.g. kvm, big-parallel).
	Features []string
	// MaxJobs is the number of builds run at once.
	MaxJobs int
	// HooksDir holds executables named after events.
	HooksDir string
	// Retries is how often a failed build is retried by default.
	Retries int
	// Strategy is the mesh's allocation strategy when bootstrapping:
	// "basic" or "derivation-ordered".
	Strategy string
	// MinCopies is the number of nodes each nar is kept on.
	MinCopies int
	// QuotaBytes limits this node's nar store (0 = no limit).
	QuotaBytes int64
	// PublicRead is what anyone may read without the admin token:
	// "cache" (the default: the binary cache, its keys and
	// /api/v1/status) or "all" (builds, logs, nodes, metrics too).
	PublicRead string
	// MaxUpload bounds one uploaded source NAR (0 = 4 GiB).
	MaxUpload int64
	// MaxVoters is the number of raft voters the leader keeps.
	MaxVoters int
	// Scale multiplies every raft and gossip timing: 1 for a LAN, more for
	// WAN or volunteer meshes; tests use less.
	Scale float64
	// DeadAfter is how long a voter may be dead before the leader removes
	// it from raft.
	DeadAfter time.Duration
	// JoinTokenTTL limits how long a freshly made join token is valid
	// (0 = until rotated).
	JoinTokenTTL time.Duration
	// GuixKey makes the mesh sign narinfos in the Guix style too.
	GuixKey bool
	// RelayPeers are libp2p multiaddrs (ADDR/p2p/PEERID) of public members
	// started with RelayService. Setting them declares this node behind
	// NAT: it holds a reservation on each and announces its address
	// through them, so members can fetch nars from it.
	RelayPeers []string
	// RelayService runs a libp2p circuit relay for members behind NAT.
	// Give it only to members reachable from the internet.
	RelayService bool
	// Logger receives the node's logs (default: slog.Default()).
	Logger *slog.Logger
	// Fast cuts raft and gossip timings to tens of milliseconds (tests).
	Fast bool
	// SnapshotThreshold and TrailingLogs tune raft snapshots: log entries
	// between snapshots, and entries kept after one (0 = consensus
	// defaults). Small values make late joiners install a snapshot.
	SnapshotThreshold, TrailingLogs uint64

	// builder, when set, replaces the backend --builder names (tests).
	builder builder.Builder
	// quotaInterval is how often the nar quota is enforced (0 = the
	// default; tests use less).
	quotaInterval time.Duration
}

// defaultQuotaInterval is how often a node with a quota checks its nar
// store.
const defaultQuotaInterval = 30 * time.Second

// DefaultConfig returns the defaults for a node on this machine.
func DefaultConfig() Config {
	host, _ := os.Hostname()
	return Config{
		DataDir:    "drvmesh-data",
		Name:       host,
		Listen:     "127.0.0.1:7700",
		Builder:    "nix",
		StoreDir:   "/nix/store",
		Systems:    []string{hostSystem()},
		MaxJobs:    max(1, runtime.NumCPU()/2),
		Strategy:   "derivation-ordered",
		PublicRead: string(httpapi.PublicReadCache),
		MinCopies:  2,
		MaxVoters:  5,
		Scale:      1,
		DeadAfter:  30 * time.Second,
	}
}

// hostSystem is the Nix system name of this machine.
func hostSystem() string {
	arch := map[string]string{"amd64": "x86_64", "arm64": "aarch64", "386": "i686", "riscv64": "riscv64"}[runtime.GOARCH]
	if arch == "" {
		arch = runtime.GOARCH
	}
	return arch + "-" + runtime.GOOS
}

// fill completes derived fields and checks the configuration.
func (c *Config) fill() error {
	d := DefaultConfig()
	if c.DataDir == "" {
		c.DataDir = d.DataDir
	}
	if c.Name == "" {
		c.Name = d.Name
	}
	if c.Listen == "" {
		c.Listen = d.Listen
	}
	if c.Builder == "" {
		c.Builder = d.Builder
	}
	switch c.Builder {
	case "nix", "guix", "none":
	default:
		return fmt.Errorf("%w: --builder must be nix, guix or none, not %q", ErrConfig, c.Builder)
	}
	if c.StoreDir == "" {
		c.StoreDir = d.StoreDir
		if c.Builder == "guix" {
			c.StoreDir = "/gnu/store"
		}
	}
	if len(c.Systems) == 0 {
		c.Systems = d.Systems
	}
	if c.MaxJobs <= 0 {
		c.MaxJobs = d.MaxJobs
	}
	if c.Strategy == "" {
		c.Strategy = d.Strategy
	}
	if c.PublicRead == "" {
		c.PublicRead = d.PublicRead
	}
	if _, err := httpapi.ParsePublicRead(c.PublicRead); err != nil {
		return fmt.Errorf("%w: --public-read must be cache or all, not %q", ErrConfig, c.PublicRead)
	}
	if c.MaxUpload <= 0 {
		c.MaxUpload = httpapi.DefaultMaxUpload
	}
	if c.Strategy != "basic" && c.Strategy != "derivation-ordered" {
		return fmt.Errorf("%w: strategy must be basic or derivation-ordered, not %q", ErrConfig, c.Strategy)
	}
	if c.MinCopies <= 0 {
		c.MinCopies = d.MinCopies
	}
	if c.MaxVoters <= 0 {
		c.MaxVoters = d.MaxVoters
	}
	if c.Scale <= 0 {
		c.Scale = 1
	}
	if c.DeadAfter <= 0 {
		c.DeadAfter = d.DeadAfter
	}
	if c.quotaInterval <= 0 {
		c.quotaInterval = defaultQuotaInterval
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c.fillAddrs()
}

// fillAddrs derives the cluster, gossip and p2p addresses from the HTTP
// one (ports + 1, 2, 3), and the advertised host.
func (c *Config) fillAddrs() error {
	host, port, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return fmt.Errorf("%w: --listen %q: %v", ErrConfig, c.Listen, err)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p > 65532 {
		return fmt.Errorf("%w: --listen %q needs a port from 1 to 65532 (the next three are used too)", ErrConfig, c.Listen)
	}
	next := func(v *string, off int) {
		if *v == "" && p == 0 {
			*v = net.JoinHostPort(host, "0") // any free port, as for HTTP
		} else if *v == "" {
			*v = net.JoinHostPort(host, strconv.Itoa(p+off))
		}
	}
	next(&c.ClusterListen, 1)
	next(&c.GossipListen, 2)
	next(&c.P2PListen, 3)
	if c.Advertise == "" {
		c.Advertise = host
		if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
			c.Advertise = "127.0.0.1"
		}
	}
	return nil
}

// advertised replaces the host of a listen address with the advertised
// host, keeping the port.
func (c *Config) advertised(listen string) string {
	_, port, _ := net.SplitHostPort(listen)
	return net.JoinHostPort(c.Advertise, port)
}
