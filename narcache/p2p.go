package narcache

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/core/protocol"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	relayv2 "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"
	quic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	ma "github.com/multiformats/go-multiaddr"
)

// NarProtocol is the libp2p protocol that moves nar files between nodes.
//
// Request: the nix32 FileHash (52 bytes) and "\n". Response: one status
// byte (0 ok, 1 not found, 2 error), a big-endian uint64 length, then that
// many bytes: the file for status 0, an error message otherwise.
const NarProtocol = protocol.ID("/drvmesh/nar/1.0.0")

const (
	statusOK       = 0
	statusNotFound = 1
	statusError    = 2
)

// Holder is a peer that holds a nar file, as the mesh index names it: a
// libp2p peer ID and the multiaddrs to reach it (may be empty when the
// peerstore already knows them).
type Holder struct {
	ID    string
	Addrs []string
}

// P2PConfig configures the peer-to-peer side of a node.
type P2PConfig struct {
	// Identity is the node's key (see LoadOrCreateIdentity). Required.
	Identity crypto.PrivKey
	// ListenAddrs are libp2p multiaddrs; default /ip4/0.0.0.0/tcp/0 (and
	// the QUIC equivalent when QUIC is set).
	ListenAddrs []string
	// QUIC adds the QUIC transport beside TCP.
	QUIC bool
	// Allow says whether a peer ID is a mesh member. Others are refused
	// right after the security handshake. Required.
	Allow func(peer.ID) bool
	// Disk serves and receives the nar files. Required.
	Disk *Disk
	// OnBadPeer is called when a peer sent bytes that failed verification.
	OnBadPeer func(peerID string, err error)
	// NATPortMap asks the gateway for a port mapping (UPnP / NAT-PMP).
	NATPortMap bool
	// HolePunching enables DCUtR, the upgrade of a relayed connection to
	// a direct one. It is on anyway when RelayService, ForcePrivate or
	// Relays is set.
	HolePunching bool
	// Relays are public members on which a node behind NAT holds a
	// circuit relay reservation, so that members can reach it at
	// RELAYADDR/p2p/RELAY/p2p-circuit/p2p/SELF; Addrs lists those
	// addresses once a reservation is held.
	Relays []peer.AddrInfo
	// RelayService runs a circuit relay v2 for members behind NAT, with
	// no per-connection data or time limit (see relayResources). Only
	// members can reserve a slot or be relayed to.
	RelayService bool
	// ForcePrivate declares the node unreachable from outside (behind
	// NAT): it then lists its relay addresses first in Addrs.
	ForcePrivate bool
	// Limits bound connections, streams, memory and stalls per peer;
	// zero fields take DefaultP2PLimits.
	Limits P2PLimits
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// P2P is a libp2p host that serves and fetches nar files among members.
type P2P struct {
	cfg P2PConfig
	lim P2PLimits // cfg.Limits with defaults filled
	log *slog.Logger

	mu         sync.Mutex
	host       host.Host
	relay      *relayv2.Relay // the relay service, nil unless RelayService
	relayCount *relayCounter
	keeper     *relayKeeper // reservations on Relays, nil without
}

// NewP2P checks the configuration; Start opens the host.
func NewP2P(cfg P2PConfig) (*P2P, error) {
	if cfg.Identity == nil || cfg.Allow == nil || cfg.Disk == nil {
		return nil, errors.New("p2p config: identity, allow and disk are required")
	}
	if len(cfg.ListenAddrs) == 0 {
		cfg.ListenAddrs = []string{"/ip4/0.0.0.0/tcp/0"}
		if cfg.QUIC {
			cfg.ListenAddrs = append(cfg.ListenAddrs, "/ip4/0.0.0.0/udp/0/quic-v1")
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &P2P{cfg: cfg, lim: cfg.Limits.withDefaults(), log: cfg.Logger}, nil
}

// Start opens the libp2p host and serves NarProtocol.
func (p *P2P) Start(ctx context.Context) error {
	rm, err := rcmgr.NewResourceManager(p.lim.limiter())
	if err != nil {
		return fmt.Errorf("resource manager: %w", err)
	}
	opts := []libp2p.Option{
		libp2p.Identity(p.cfg.Identity),
		libp2p.ListenAddrStrings(p.cfg.ListenAddrs...),
		libp2p.ConnectionGater(memberGater{allow: p.cfg.Allow}),
		libp2p.ResourceManager(rm),
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.DisableMetrics(),
	}
	if p.cfg.QUIC {
		opts = append(opts, libp2p.Transport(quic.NewTransport))
	}
	if p.cfg.NATPortMap {
		opts = append(opts, libp2p.NATPortMap())
	}
	// Every node can dial a member through a relay: the relay transport
	// is always on. The member gater still sees, and refuses, any
	// non-member at the far end of a circuit (InterceptSecured).
	opts = append(opts, libp2p.EnableRelay())
	relayed := p.cfg.RelayService || p.cfg.ForcePrivate || len(p.cfg.Relays) > 0
	if p.cfg.HolePunching || relayed {
		opts = append(opts, libp2p.EnableHolePunching())
	}
	if p.cfg.ForcePrivate {
		opts = append(opts, libp2p.ForceReachabilityPrivate())
	}
	h, err := libp2p.New(opts...)
	if err != nil {
		return fmt.Errorf("start libp2p host: %w", err)
	}
	var (
		rs     *relayv2.Relay
		count  *relayCounter
		keeper *relayKeeper
	)
	if p.cfg.RelayService {
		count = &relayCounter{}
		if rs, err = startRelayService(h, p.cfg.Allow, count); err != nil {
			_ = h.Close()
			return fmt.Errorf("start relay service: %w", err)
		}
	}
	if len(p.cfg.Relays) > 0 {
		keeper = newRelayKeeper(h, p.cfg.Relays, p.log)
		if err := keeper.start(); err != nil {
			if rs != nil {
				_ = rs.Close()
			}
			_ = h.Close()
			return fmt.Errorf("start relay reservations: %w", err)
		}
	}
	h.SetStreamHandler(NarProtocol, p.serve)
	p.mu.Lock()
	p.host, p.relay, p.relayCount, p.keeper = h, rs, count, keeper
	p.mu.Unlock()
	p.log.Info("libp2p host started", "peer", h.ID().String(), "addrs", fmt.Sprint(h.Addrs()),
		"relay_service", p.cfg.RelayService, "relays", len(p.cfg.Relays), "private", p.cfg.ForcePrivate)
	return nil
}

// Close stops the host.
func (p *P2P) Close() error {
	p.mu.Lock()
	h, rs, keeper := p.host, p.relay, p.keeper
	p.host, p.relay, p.keeper = nil, nil, nil
	p.mu.Unlock()
	if h == nil {
		return nil
	}
	if keeper != nil {
		keeper.stop()
	}
	if rs != nil {
		_ = rs.Close()
	}
	h.RemoveStreamHandler(NarProtocol)
	if err := h.Close(); err != nil {
		return fmt.Errorf("close libp2p host: %w", err)
	}
	return nil
}

// Host is the libp2p host, nil before Start.
func (p *P2P) Host() host.Host {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.host
}

// ID is this node's peer ID.
func (p *P2P) ID() peer.ID {
	id, _ := peer.IDFromPrivateKey(p.cfg.Identity)
	return id
}

// Addrs are the multiaddrs members can reach this node at, nil before
// Start: the host's own addresses and, once a reservation is held, its
// circuit addresses through each static relay. A node behind NAT
// (ForcePrivate) lists the circuit addresses first, since its own are
// unreachable from outside; other nodes list them last.
func (p *P2P) Addrs() []string {
	p.mu.Lock()
	h, keeper := p.host, p.keeper
	p.mu.Unlock()
	if h == nil {
		return nil
	}
	var direct, circuit []string
	seen := map[string]bool{}
	add := func(a ma.Multiaddr) {
		s := a.String()
		if seen[s] {
			return
		}
		seen[s] = true
		if isCircuit(a) {
			circuit = append(circuit, s)
		} else {
			direct = append(direct, s)
		}
	}
	for _, a := range keeper.addrs() {
		add(a)
	}
	for _, a := range h.Addrs() {
		add(a)
	}
	if p.cfg.ForcePrivate {
		return append(circuit, direct...)
	}
	return append(direct, circuit...)
}

// serve answers one NarProtocol request from the local disk.
func (p *P2P) serve(s network.Stream) {
	defer s.Close()
	// The request is one short line: a peer that sends more, or takes
	// longer than RequestTimeout, is cut off.
	_ = s.SetReadDeadline(time.Now().Add(p.lim.RequestTimeout))
	br := bufio.NewReaderSize(s, maxRequestLen)
	line, err := br.ReadSlice('\n')
	if err != nil {
		p.log.Debug("read nar request", "peer", s.Conn().RemotePeer().String(), "err", err)
		_ = s.Reset()
		return
	}
	_ = s.SetReadDeadline(time.Time{})
	key := string(line[:len(line)-1])
	// A peer that stops reading is cut off after IdleTimeout.
	w := &idleStream{s: s, idle: p.lim.IdleTimeout, peer: s.Conn().RemotePeer().String()}
	if _, err := ParseFileKey(key); err != nil {
		writeStatus(w, statusError, err.Error())
		return
	}
	fh, f, err := p.cfg.Disk.Open(key)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			writeStatus(w, statusNotFound, "not found")
			return
		}
		writeStatus(w, statusError, err.Error())
		return
	}
	defer fh.Close()
	var hdr [9]byte
	hdr[0] = statusOK
	binary.BigEndian.PutUint64(hdr[1:], uint64(f.FileSize))
	if _, err := w.Write(hdr[:]); err != nil {
		_ = s.Reset()
		return
	}
	buf := make([]byte, copyBufSize)
	if _, err := io.CopyBuffer(w, io.LimitReader(fh, f.FileSize), buf); err != nil {
		p.log.Debug("send nar", "file", key, "peer", s.Conn().RemotePeer().String(), "err", err)
		_ = s.Reset()
		return
	}
	_ = s.CloseWrite()
}

func writeStatus(w *idleStream, status byte, msg string) {
	if len(msg) > maxStatusMsg {
		msg = msg[:maxStatusMsg]
	}
	var hdr [9]byte
	hdr[0] = status
	binary.BigEndian.PutUint64(hdr[1:], uint64(len(msg)))
	_, _ = w.Write(append(hdr[:], msg...))
	_ = w.s.CloseWrite()
}

// maxStatusMsg bounds the error message of a status other than ok.
const maxStatusMsg = 1024

// Fetch opens a stream to the holder and returns the file's bytes as they
// arrive, and their length. The bytes are not verified: use Replicate, or
// Disk.Create, to keep them. The caller closes the reader. Ending ctx cuts
// the transfer; so does a holder that sends nothing for IdleTimeout
// (ErrStalled).
func (p *P2P) Fetch(ctx context.Context, h Holder, f File) (io.ReadCloser, int64, error) {
	host := p.Host()
	if host == nil {
		return nil, 0, fmt.Errorf("fetch: %w", ErrClosed)
	}
	pid, err := peer.Decode(h.ID)
	if err != nil {
		return nil, 0, fmt.Errorf("fetch: peer id %q: %w", h.ID, err)
	}
	if !p.cfg.Allow(pid) {
		return nil, 0, fmt.Errorf("fetch from %s: %w", h.ID, ErrNotMember)
	}
	for _, a := range h.Addrs {
		m, err := holderAddr(a, pid)
		if err != nil {
			return nil, 0, fmt.Errorf("fetch: %w", err)
		}
		if m != nil {
			host.Peerstore().AddAddr(pid, m, peerstore.TempAddrTTL)
		}
	}
	// A connection through a relay that limits circuits is "limited":
	// open the stream on it anyway. A relay run by RelayService sets no
	// limit, so a nar of any size crosses it.
	s, err := host.NewStream(network.WithAllowLimitedConn(ctx, "nar transfer"), pid, NarProtocol)
	if err != nil {
		return nil, 0, fmt.Errorf("open nar stream to %s: %w", h.ID, err)
	}
	is := &idleStream{s: s, idle: p.lim.IdleTimeout, peer: h.ID}
	if dl, ok := ctx.Deadline(); ok {
		is.limit = dl
	}
	stop := context.AfterFunc(ctx, func() { _ = s.Reset() })
	n, err := p.readResponse(ctx, is, h, f)
	if err != nil {
		stop()
		return nil, 0, err
	}
	return &streamBody{ctx: ctx, s: is, left: n, stop: stop}, n, nil
}

// readResponse sends the request for f and reads the response header.
func (p *P2P) readResponse(ctx context.Context, is *idleStream, h Holder, f File) (_ int64, err error) {
	s := is.s
	defer func() {
		if err != nil && ctx.Err() != nil {
			err = fmt.Errorf("fetch %s from %s: %w", f.Key(), h.ID, ctx.Err())
		}
	}()
	if _, err := is.Write([]byte(f.Key() + "\n")); err != nil {
		_ = s.Reset()
		return 0, fmt.Errorf("send nar request: %w", err)
	}
	_ = s.CloseWrite()
	var hdr [9]byte
	if _, err := io.ReadFull(is, hdr[:]); err != nil {
		_ = s.Reset()
		if errors.Is(err, ErrStalled) {
			return 0, fmt.Errorf("read nar response: %w", err)
		}
		return 0, fmt.Errorf("%w: read nar response from %s: %v", ErrPeer, h.ID, err)
	}
	n := int64(binary.BigEndian.Uint64(hdr[1:]))
	switch hdr[0] {
	case statusOK:
	case statusNotFound, statusError:
		msg, _ := io.ReadAll(io.LimitReader(is, min(max(n, 0), maxStatusMsg)))
		_ = s.Close()
		if hdr[0] == statusNotFound {
			return 0, fmt.Errorf("fetch %s from %s: %w", f.Key(), h.ID, ErrNotFound)
		}
		return 0, fmt.Errorf("%w: %s: %s", ErrPeer, h.ID, msg)
	default:
		_ = s.Reset()
		return 0, fmt.Errorf("%w: %s sent status %d", ErrPeer, h.ID, hdr[0])
	}
	if f.FileSize != 0 && n != f.FileSize {
		_ = s.Reset()
		return 0, fmt.Errorf("%w: %s offers %d bytes, want %d", ErrHashMismatch, h.ID, n, f.FileSize)
	}
	if f.FileSize == 0 && (n < 0 || n > p.lim.MaxFileSize) {
		_ = s.Reset()
		return 0, fmt.Errorf("%w: %s offers %d bytes, more than the %d allowed", ErrPeer, h.ID, uint64(n), p.lim.MaxFileSize)
	}
	return n, nil
}

// holderAddr parses one of a holder's addresses. A trailing /p2p/ID must
// name the holder, and is dropped: the peerstore keys addresses by peer.
// A circuit address (RELAYADDR/p2p/RELAY/p2p-circuit) keeps the relay.
func holderAddr(a string, pid peer.ID) (ma.Multiaddr, error) {
	m, err := ma.NewMultiaddr(a)
	if err != nil {
		return nil, fmt.Errorf("address %q: %w", a, err)
	}
	transport, id := peer.SplitAddr(m)
	if id == "" {
		return m, nil
	}
	if id != pid {
		return nil, fmt.Errorf("address %q does not lead to %s: %w", a, pid, ErrPeer)
	}
	return transport, nil // nil for a bare /p2p/ID: the peerstore decides
}

// streamBody reads exactly the announced length from a stream.
type streamBody struct {
	ctx  context.Context
	s    *idleStream
	left int64
	stop func() bool // unhooks the reset on ctx's end
}

func (b *streamBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.s.Read(p)
	b.left -= int64(n)
	switch {
	case err == nil:
	case b.ctx.Err() != nil:
		err = fmt.Errorf("receive nar from %s: %w", b.s.peer, b.ctx.Err())
	case err == io.EOF && b.left > 0:
		err = fmt.Errorf("%w: %s ended the stream %d bytes early", ErrPeer, b.s.peer, b.left)
	case err == io.EOF:
		err = nil
	case !errors.Is(err, ErrStalled):
		err = fmt.Errorf("%w: receive nar from %s: %w", ErrPeer, b.s.peer, err)
	}
	return n, err
}

func (b *streamBody) Close() error {
	b.stop()
	if b.left > 0 {
		return b.s.s.Reset()
	}
	return b.s.s.Close()
}

// Replicate fetches the file want names from the holder, verifies it
// against want (FileHash, FileSize, NarHash and NarSize when set) and
// keeps it on disk. A holder whose bytes fail verification is reported to
// OnBadPeer and nothing is kept.
func (p *P2P) Replicate(ctx context.Context, h Holder, want File) (File, error) {
	if p.cfg.Disk.Has(want.Key()) {
		f, _ := p.cfg.Disk.Stat(want.Key())
		return f, nil
	}
	rc, _, err := p.Fetch(ctx, h, want)
	if err != nil {
		if errors.Is(err, ErrHashMismatch) {
			p.badPeer(h.ID, err)
		}
		return File{}, err
	}
	defer rc.Close()
	f, err := p.cfg.Disk.Put(ctx, want, rc)
	if err != nil {
		if isBadData(err) {
			p.badPeer(h.ID, err)
		}
		return File{}, fmt.Errorf("replicate %s from %s: %w", want.Key(), h.ID, err)
	}
	return f, nil
}

// ReplicateAny tries the holders in order until one sends a copy that
// verifies, and keeps it. A holder that fails (has no copy, sends bad
// bytes, cuts or stalls the transfer) is passed over; bad bytes are
// reported to OnBadPeer. The error joins every holder's failure.
func (p *P2P) ReplicateAny(ctx context.Context, holders []Holder, want File) (File, error) {
	var errs []error
	for _, h := range holders {
		f, err := p.Replicate(ctx, h, want)
		if err == nil {
			return f, nil
		}
		if ctx.Err() != nil {
			return File{}, fmt.Errorf("replicate %s: %w", want.Key(), ctx.Err())
		}
		p.log.Info("holder failed; trying the next", "file", want.Key(), "peer", h.ID, "err", err)
		errs = append(errs, err)
	}
	return File{}, fmt.Errorf("replicate %s: %w: %w", want.Key(), ErrNoHolder, errors.Join(errs...))
}

// isBadData tells verification failures (the sender's fault) from local
// I/O errors and cancellation.
func isBadData(err error) bool {
	return errors.Is(err, ErrHashMismatch) || errors.Is(err, ErrCorrupt)
}

func (p *P2P) badPeer(id string, err error) {
	p.log.Warn("peer sent a bad nar", "peer", id, "err", err)
	if p.cfg.OnBadPeer != nil {
		p.cfg.OnBadPeer(id, err)
	}
}
