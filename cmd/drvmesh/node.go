package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/drvmesh/drvmesh/node"
)

func init() {
	register("node", "run a node (bootstraps a new mesh when the data dir is empty and --join is not given)", runNode)
	register("join", "run a node that joins the mesh through ADDR: drvmesh join ADDR --token-file FILE [node flags]", runJoin)
}

// nodeFlags adds the node flags of docs/contract.md to fs.
func nodeFlags(fs *flag.FlagSet) func() (node.Config, error) {
	d := node.DefaultConfig()
	dataDir := fs.String("data-dir", d.DataDir, "where the node keeps its state")
	name := fs.String("name", d.Name, "this node's name in the mesh")
	listen := fs.String("listen", d.Listen, "HTTP address; the next three ports carry cluster (raft, RPC), gossip and libp2p traffic")
	cluster := fs.String("cluster-listen", "", "raft and RPC address (default: HTTP port + 1)")
	gossipL := fs.String("gossip-listen", "", "gossip address (default: HTTP port + 2)")
	p2p := fs.String("p2p-listen", "", "libp2p address (default: HTTP port + 3)")
	advertise := fs.String("advertise", "", "host other nodes reach this one at (default: the listen host)")
	join := fs.String("join", "", "member HTTP addresses to join through, comma-separated")
	token := fs.String("token", "", "join token (with --join; prefer --token-file or $DRVMESH_JOIN_TOKEN: argv is visible to every user)")
	tokenFile := fs.String("token-file", "", "file holding the join token (default $DRVMESH_JOIN_TOKEN_FILE)")
	builder := fs.String("builder", d.Builder, "nix, guix or none")
	nixStore := fs.String("nix-store", "", "Nix store URI for the nix builder, e.g. local?root=DIR")
	storeDir := fs.String("store-dir", "", "store dir of the mesh (default /nix/store, /gnu/store for guix)")
	systems := fs.String("systems", strings.Join(d.Systems, ","), "systems this node builds for")
	features := fs.String("features", "", "system features this node offers, comma-separated")
	maxJobs := fs.Int("max-jobs", d.MaxJobs, "builds run at once")
	hooks := fs.String("hooks", "", "directory of hook executables named after events")
	retries := fs.Int("retries", 0, "retry failed builds up to N times (mesh default; set when bootstrapping)")
	strategy := fs.String("strategy", d.Strategy, "allocation strategy of a new mesh: basic or derivation-ordered")
	minCopies := fs.Int("min-copies", d.MinCopies, "nodes each nar is kept on (set when bootstrapping)")
	quota := fs.Int64("quota", 0, "bytes of nars this node keeps at most (0: no limit)")
	publicRead := fs.String("public-read", d.PublicRead, "what anyone may read without the admin token: cache (the binary cache, keys and status) or all (builds, logs, nodes, metrics too)")
	maxUpload := fs.Int64("max-upload", 0, "bytes of one uploaded source NAR at most (0: 4 GiB)")
	scale := fs.Float64("timing-scale", 1, "multiply raft and gossip timings (LAN 1; WAN or volunteer meshes 3-10)")
	guixKey := fs.Bool("guix-key", false, "also make a Guix signing key when bootstrapping")
	relays := fs.String("relays", "", "for a node behind NAT: libp2p multiaddrs (ADDR/p2p/PEERID, comma-separated) of members started with --relay-service")
	relayService := fs.Bool("relay-service", false, "run a libp2p circuit relay for members behind NAT")
	tokenTTL := fs.Duration("join-token-ttl", 0, "how long the join token of a new mesh is valid (0: until rotated)")
	verbose := fs.Bool("verbose", false, "debug logging")
	return func() (node.Config, error) {
		level := slog.LevelInfo
		if *verbose {
			level = slog.LevelDebug
		}
		joinToken, err := tokenFrom(*token, *tokenFile, "DRVMESH_JOIN_TOKEN")
		if err != nil {
			return node.Config{}, err
		}
		c := node.Config{
			DataDir: *dataDir, Name: *name, Listen: *listen, ClusterListen: *cluster,
			GossipListen: *gossipL, P2PListen: *p2p, Advertise: *advertise,
			JoinToken: joinToken, Builder: *builder, NixStore: *nixStore, StoreDir: *storeDir,
			Systems: splitList(*systems), Features: splitList(*features), MaxJobs: *maxJobs,
			HooksDir: *hooks, Retries: *retries, Strategy: *strategy, MinCopies: *minCopies,
			QuotaBytes: *quota, PublicRead: *publicRead, MaxUpload: *maxUpload, Scale: *scale, GuixKey: *guixKey, RelayPeers: splitList(*relays),
			RelayService: *relayService,
			JoinTokenTTL: *tokenTTL,
			Logger:       slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})),
		}
		c.Join = splitList(*join)
		return c, nil
	}
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' }) {
		out = append(out, f)
	}
	return out
}

func runNode(args []string) error {
	fs := newFlags("node")
	mk := nodeFlags(fs)
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usageErr("node takes flags only (did you mean 'drvmesh join %s'?)", pos[0])
	}
	cfg, err := mk()
	if err != nil {
		return err
	}
	return serve(cfg)
}

func runJoin(args []string) error {
	fs := newFlags("join")
	mk := nodeFlags(fs)
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageErr("join takes one member address: drvmesh join HOST:PORT --token-file FILE")
	}
	cfg, err := mk()
	if err != nil {
		return err
	}
	cfg.Join = append([]string{pos[0]}, cfg.Join...)
	return serve(cfg)
}

// serve runs a node until SIGINT or SIGTERM, then stops it gracefully.
func serve(cfg node.Config) error {
	n, err := node.New(cfg)
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := n.Start(ctx); err != nil {
		return fmt.Errorf("%w: start node: %v", errFailed, err)
	}
	if n.Bootstrapped {
		fmt.Fprintf(os.Stderr, `
A new mesh is up. This node is %s, serving %s.

  Add a machine:   copy %s to it, then
                   drvmesh join %s --token-file join-token
  Admin token:     %s   (for submit and cancel: --token-file or DRVMESH_TOKEN)
  Trust the mesh:  trusted-public-keys = %s

The tokens are not printed: they are in the files above (mode 0600).

`, n.Name(), n.URL(), filepath.Join(cfg.DataDir, "join-token"), strings.TrimPrefix(n.URL(), "http://"), filepath.Join(cfg.DataDir, "admin-token"), n.PublicKey())
	}
	<-ctx.Done()
	fmt.Fprintln(os.Stderr, "drvmesh: stopping: handing back builds and leaving the mesh")
	done := make(chan struct{})
	go func() { n.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		return fmt.Errorf("%w: the node did not stop within 30s", errFailed)
	}
	return nil
}
