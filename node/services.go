package node

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/drvmesh/drvmesh/builder"
	"github.com/drvmesh/drvmesh/consensus"
	"github.com/drvmesh/drvmesh/gossip"
	"github.com/drvmesh/drvmesh/node/agent"
	"github.com/drvmesh/drvmesh/node/cluster"
	"github.com/drvmesh/drvmesh/node/httpapi"
	"github.com/drvmesh/drvmesh/node/leader"
)

// startServices starts everything after the identity is settled, in
// named steps; then, on a new mesh, records its settings; then the loops.
// Every goroutine derives from the run context made here.
func (n *Node) startServices(ctx context.Context, bootstrap bool) error {
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	n.run, n.cancel = rctx, cancel
	steps := []struct {
		name  string
		start func(context.Context) error
	}{
		{"cluster port", n.startCluster},
		{"raft", func(ctx context.Context) error { return n.startRaft(ctx, bootstrap) }},
		{"nar cache", n.startCache},
		{"gossip", n.startGossip},
		{"builder", n.startBuilder},
		{"rooms", n.startRooms},
		{"HTTP", n.startHTTP},
	}
	for _, s := range steps {
		if err := s.start(ctx); err != nil {
			return fmt.Errorf("start %s: %w", s.name, err)
		}
	}
	if bootstrap {
		if err := n.initMesh(ctx); err != nil {
			return err
		}
	}
	n.startLoops(rctx)
	n.log.Info("node started", "http", n.httpAdvertise(), "cluster", n.clusterAdvertise(), "gossip", n.gossipAdvertise(), "p2p", n.presence.p2pAddr(), "builder", n.cfg.Builder)
	return nil
}

// startCluster serves the cluster port: raft and RPC over mutual TLS.
func (n *Node) startCluster(context.Context) error {
	n.mux = cluster.NewMux(n.clusterLn, n.creds.ServerTLS, n.log)
	n.wg.Add(1)
	go func() { defer n.wg.Done(); n.mux.Serve() }()
	return nil
}

// startRaft opens the replicated state and raft over the cluster port,
// and the forwarder every write goes through, served over RPC at once.
func (n *Node) startRaft(ctx context.Context, bootstrap bool) error {
	advertise, err := net.ResolveTCPAddr("tcp", n.clusterAdvertise())
	if err != nil {
		return fmt.Errorf("%w: advertise address %s: %v", ErrConfig, n.clusterAdvertise(), err)
	}
	rcfg := consensus.Config{
		NodeID:    n.cfg.Name,
		DataDir:   filepath.Join(n.cfg.DataDir, dirRaft),
		Advertise: n.clusterAdvertise(),
		Layer:     n.mux.RaftLayer(advertise, n.creds.Dialer),
		Bootstrap: bootstrap,
		Scale:     n.cfg.Scale,
		// consensus names the node and the component itself.
		Logger: n.cfg.Logger,

		SnapshotThreshold: n.cfg.SnapshotThreshold,
		TrailingLogs:      n.cfg.TrailingLogs,
	}
	// Followers learn the commit index from the leader's next append: a
	// short commit timeout keeps what a follower serves (and so a
	// client's read after its write through it) within ~10 ms.
	rcfg.CommitTimeout = 10 * time.Millisecond
	if n.cfg.Fast {
		rcfg.SetTimings(consensus.TestTimings())
	}
	n.raft, err = consensus.New(rcfg)
	if err != nil {
		return err
	}
	// A follower hears from its leader every heartbeat/10; ten heartbeat
	// timeouts without it and this node no longer knows who votes.
	t := consensus.DefaultTimings()
	if n.cfg.Fast {
		t = consensus.TestTimings()
	}
	n.mux.GateRaft(cluster.VoterGate(n.raft, time.Duration(10*n.cfg.Scale*float64(t.HeartbeatTimeout))))
	if err := n.raft.Start(ctx); err != nil {
		return err
	}
	n.fwd = cluster.NewForwarder(n.raft, n.creds.RPC, n.cfg.Name, n.log)
	n.rpcSrv = clusterServer(n.rpcHandler(&n.rpcRooms))
	n.wg.Add(1)
	go func() { defer n.wg.Done(); _ = n.rpcSrv.Serve(n.mux.RPCListener()) }()
	return nil
}

// startGossip joins nothing yet (see joinGossip): it starts memberlist
// with this node's meta, and the peers file it keeps.
func (n *Node) startGossip(ctx context.Context) error {
	host, portStr, err := net.SplitHostPort(n.cfg.GossipListen)
	if err != nil {
		return fmt.Errorf("%w: gossip address %q: %v", ErrConfig, n.cfg.GossipListen, err)
	}
	port, _ := strconv.Atoi(portStr)
	gcfg := gossip.DefaultConfig()
	if n.cfg.Fast {
		gcfg = gossip.TestConfig()
	}
	gcfg.Name = n.cfg.Name
	gcfg.BindAddr, gcfg.BindPort = host, port
	if port != 0 {
		gcfg.AdvertiseAddr, gcfg.AdvertisePort = n.cfg.Advertise, port
	} // else memberlist advertises the bound address and the port it picked
	gcfg.SecretKey = n.creds.Secrets.GossipKey
	gcfg.Scale = n.cfg.Scale
	gcfg.Logger = n.cfg.Logger // gossip names the node and the component itself
	n.gossip, err = gossip.New(gcfg)
	if err != nil {
		return err
	}
	n.peers = cluster.NewPeers(n.cfg.DataDir, n.cfg.Name, n.gossip, n.gossipAdvertise, n.raft.State, n.creds.RPC)
	if err := n.gossip.SetMeta(n.presence.meta()); err != nil {
		return err
	}
	return n.gossip.Start(ctx)
}

// startBuilder opens the backend --builder names.
func (n *Node) startBuilder(context.Context) error {
	var err error
	switch {
	case n.cfg.builder != nil:
		n.builder = n.cfg.builder
	case n.cfg.Builder == "nix":
		n.builder, err = builder.NewNix(builder.NixConfig{
			Store: n.cfg.NixStore, StoreDir: n.cfg.StoreDir,
			StateDir: filepath.Join(n.cfg.DataDir, "nix-client"),
			Logger:   n.log.With("component", "builder"),
		})
	case n.cfg.Builder == "guix":
		n.builder, err = builder.NewGuix(builder.GuixConfig{StoreDir: n.cfg.StoreDir, Logger: n.log.With("component", "builder")})
	default:
		n.builder = builder.NewNone()
	}
	return err
}

// startRooms makes the agent, the HTTP API and the leader's duties, each
// given what it consumes, and adds the rooms' node-to-node routes.
func (n *Node) startRooms(context.Context) error {
	acfg := agent.Config{
		Name: n.cfg.Name, Builder: n.cfg.Builder, StoreDir: n.cfg.StoreDir, DataDir: n.cfg.DataDir,
		MaxJobs: n.cfg.MaxJobs, MinCopies: n.cfg.MinCopies, QuotaBytes: n.cfg.QuotaBytes,
		URL: n.URL, Signer: n.creds.Signer, RPC: n.creds.RPC, PushMeta: n.presence.push,
		Raft: n.raft, Apply: n.fwd.As(cluster.RoleNode), Members: n.gossip, Files: n.files, Build: n.builder, Disk: n.disk, P2P: n.p2p,
		BuildSeconds: n.metrics.buildSeconds, BuildPhase: n.metrics.buildPhase, Log: n.log,
	}
	n.keep = agent.NewKeeper(n.run, acfg)
	n.agent = agent.New(acfg, n.keep)
	n.api = httpapi.New(httpapi.Config{
		Name: n.cfg.Name, StoreDir: n.cfg.StoreDir, PublicKey: n.PublicKey(), Guix: n.creds.Guix,
		Raft: n.raft, Apply: n.fwd.As(cluster.RoleAdmin), Members: n.gossip, Copies: n.keep, Jobs: n.agent, Files: n.files, Disk: n.disk,
		NoLeader: ErrNoLeader, TokenHash: cluster.TokenHash,
		PublicRead: httpapi.PublicRead(n.cfg.PublicRead), MaxUpload: n.cfg.MaxUpload,
		Join:  cluster.NewJoinServer(n.creds, n.raft.State, n.fwd, n.peers, n.log),
		Cache: n.cache, Metrics: n.metrics.handler(),
	})
	n.leader = leader.New(leader.Config{
		Name: n.cfg.Name, MaxVoters: n.cfg.MaxVoters, DeadAfter: n.cfg.DeadAfter, HooksDir: n.cfg.HooksDir,
		Fast: n.cfg.Fast, Scale: n.cfg.Scale, URL: n.URL, BuildJSON: httpapi.BuildJSON,
		Raft: n.raft, Apply: n.fwd.As(cluster.RoleLeader), Members: n.gossip, Index: remoteIndex{n.fwd}, Copies: n.keep, Submit: n.api,
		Assigned: n.metrics.assigned, HookRuns: n.metrics.hookRuns, Log: n.log,
	})
	rooms := http.NewServeMux()
	n.keep.Routes(rooms)
	rooms.HandleFunc("GET "+cluster.NodesRoute, n.api.ServeNodes)
	n.agent.Routes(rooms)
	n.rpcRooms.h.Store(rooms)
	return nil
}

// startHTTP serves the public HTTP API.
func (n *Node) startHTTP(context.Context) error {
	n.metrics.registerState(n)
	n.httpSrv = publicServer(n.metrics.instrument(n.api.Handler()))
	ln := publicListener(n.httpLn)
	n.wg.Add(1)
	go func() { defer n.wg.Done(); _ = n.httpSrv.Serve(ln) }()
	return nil
}

// startLoops starts the node's loops under the run context: joining
// gossip, the leader's duties, the agent and the meta loop.
func (n *Node) startLoops(rctx context.Context) {
	n.wg.Add(1)
	go func() { defer n.wg.Done(); n.presence.joinGossip(rctx) }()
	n.leaderStopped = make(chan struct{})
	n.wg.Add(1)
	go func() { defer n.wg.Done(); defer close(n.leaderStopped); n.leader.Run(rctx) }()
	n.agent.Start(rctx)
	n.wg.Add(1)
	go func() { defer n.wg.Done(); n.presence.loop(rctx) }()
}

// initMesh records the new mesh's settings and this node once it leads.
func (n *Node) initMesh(ctx context.Context) error {
	lead, unsub := n.raft.WatchLeadership()
	defer unsub()
	deadline := time.After(30 * time.Second)
	for !n.raft.IsLeader() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for the new mesh's leader: %w", ctx.Err())
		case <-deadline:
			return fmt.Errorf("%w: the new mesh elected no leader in 30s", ErrNoLeader)
		case <-lead:
		case <-time.After(10 * time.Millisecond):
		}
	}
	st := consensus.Settings{
		Strategy:       n.cfg.Strategy,
		JoinTokenHash:  cluster.TokenHash(n.creds.Secrets.JoinToken),
		AdminTokenHash: cluster.TokenHash(n.AdminToken),
		MinCopies:      n.cfg.MinCopies,
		Retries:        n.cfg.Retries,
	}
	if n.cfg.JoinTokenTTL > 0 {
		st.JoinTokenExpires = time.Now().Add(n.cfg.JoinTokenTTL).UTC()
	}
	asLeader := n.fwd.As(cluster.RoleLeader)
	if _, err := asLeader.ApplyAndCatchUp(ctx, &consensus.SetSettings{Settings: st}); err != nil {
		return fmt.Errorf("record mesh settings: %w", err)
	}
	// The first member records itself, as the leader: nobody admitted it.
	self := consensus.Node{
		Name: n.cfg.Name, HTTP: n.httpAdvertise(), Raft: n.clusterAdvertise(), P2P: n.presence.p2pAddr(),
		PeerID: n.p2p.ID().String(), CertFingerprint: n.creds.Fingerprint(), AdmittedAt: time.Now().UTC(), Voter: true,
	}
	if _, err := asLeader.ApplyAndCatchUp(ctx, &consensus.PutNode{Node: self}); err != nil {
		return fmt.Errorf("record the first member: %w", err)
	}
	return nil
}

// stopServices stops everything Start started, in named steps in the
// reverse order of the start, then waits for every goroutine.
func (n *Node) stopServices() {
	if n.cancel != nil {
		n.cancel() // the run context: every loop ends
	}
	if n.agent != nil {
		n.agent.StopJobs(false)
	}
	// The run context has ended: shutting down gets a bounded one.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	steps := []struct {
		name string
		stop func() error
	}{
		{"HTTP", func() error {
			if n.httpSrv != nil {
				return n.httpSrv.Shutdown(ctx)
			}
			if n.httpLn != nil {
				return n.httpLn.Close()
			}
			return nil
		}},
		{"gossip", func() error {
			if n.gossip == nil {
				return nil
			}
			return n.gossip.Close()
		}},
		{"RPC", func() error {
			if n.rpcSrv == nil {
				return nil
			}
			return n.rpcSrv.Close()
		}},
		{"raft", func() error {
			if n.raft == nil {
				return nil
			}
			return n.raft.Close()
		}},
		{"cluster port", func() error {
			if n.mux != nil {
				return n.mux.Close()
			}
			if n.clusterLn != nil {
				return n.clusterLn.Close()
			}
			return nil
		}},
		{"nar cache", func() error {
			if n.p2p == nil {
				return nil
			}
			return n.p2p.Close()
		}},
		{"builder", func() error {
			if n.builder == nil {
				return nil
			}
			return n.builder.Close()
		}},
	}
	for _, s := range steps {
		if err := s.stop(); err != nil {
			n.log.Debug("stop "+s.name, keyErr, err)
		}
	}
	if n.agent != nil {
		n.agent.Wait()
		n.keep.Wait()
	}
	n.wg.Wait()
}

// leaveGracefully hands back this node's builds, passes on leadership and
// leaves gossip, so the mesh carries on without waiting for timeouts.
func (n *Node) leaveGracefully() {
	if n.raft == nil || n.fwd == nil {
		return
	}
	// The run context still runs (the leader loops stop below, after the
	// hand-back); the leave is bounded on its own.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	running := 0
	if n.agent != nil {
		running = n.agent.StopJobs(true)
	}
	if running > 0 {
		n.log.Info("handing back running builds", keyCount, running)
	}
	if _, err := n.fwd.As(cluster.RoleNode).ApplyAndCatchUp(ctx, &consensus.RequeueNode{Node: n.cfg.Name}); err != nil {
		n.log.Warn("hand back builds", keyErr, err)
	}
	if n.cancel != nil {
		n.cancel() // stop the leader loops before passing leadership on
	}
	if n.leaderStopped != nil {
		// The hook runner finishes and acknowledges its hook first, or the
		// next leader would run it again.
		select {
		case <-n.leaderStopped:
		case <-ctx.Done():
		}
	}
	if n.raft.IsLeader() {
		if err := n.raft.LeadershipTransfer(); err != nil {
			n.log.Warn("leadership transfer", keyErr, err)
		}
	}
	if n.gossip != nil {
		if err := n.gossip.Leave(2 * time.Second); err != nil {
			n.log.Debug("gossip leave", keyErr, err)
		}
	}
}

// allowPeer admits libp2p peers that are mesh members.
func (n *Node) allowPeer(id peer.ID) bool {
	if n.raft == nil || n.raft.State() == nil {
		return false
	}
	nodes, err := n.raft.State().Nodes()
	if err != nil {
		return false
	}
	s := id.String()
	for _, nd := range nodes {
		if nd.PeerID == s {
			return true
		}
	}
	return false
}
