package gossip

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/hashicorp/memberlist"
)

// DefaultPort is the gossip port (TCP and UDP) when none is given.
const DefaultPort = 7702

// Config configures a Gossip. Start from DefaultConfig (or TestConfig in
// tests) and override fields; the zero value of a field means its default.
type Config struct {
	// Name is this node's name, unique in the mesh. Required.
	Name string
	// BindAddr is the address the gossip TCP and UDP listeners bind to.
	// Default "0.0.0.0".
	BindAddr string
	// BindPort is the port both listeners bind to; 0 picks a free port
	// (LocalAddr reports it). DefaultConfig sets DefaultPort.
	BindPort int
	// AdvertiseAddr is the IP other nodes reach this node at. Empty lets
	// memberlist derive it from BindAddr (or the first private address).
	AdvertiseAddr string
	// AdvertisePort is the port other nodes reach this node at. 0 means the
	// bound port.
	AdvertisePort int
	// SecretKey is a 32-byte AES-256 key. With it memberlist encrypts and
	// authenticates every gossip packet and stream, so a node without the
	// same key can neither join nor read the mesh. Nil disables encryption
	// (tests and trusted networks only); any other length is ErrBadConfig.
	SecretKey []byte
	// Scale multiplies every duration of Timings, for WAN or volunteer meshes
	// where round trips are long: 1 (the default) keeps LAN timings.
	Scale float64
	// Timings are memberlist's probe and gossip periods before Scale.
	Timings Timings
	// EventBuffer is the capacity of the Events channel. When it is full
	// the oldest event is dropped to make room, so memberlist never blocks.
	// Default 256.
	EventBuffer int
	// Retention is how long a dead or left member stays in Members after
	// its last change. Default 24h.
	Retention time.Duration
	// UpdateTimeout bounds how long SetMeta and Leave wait for their
	// broadcast to reach a peer. Default 5s.
	UpdateTimeout time.Duration
	// Logger receives the package's and memberlist's logs. Nil means
	// slog.Default().
	Logger *slog.Logger
}

// Timings are the memberlist periods this package exposes. Every field is
// multiplied by Config.Scale.
type Timings struct {
	// ProbeInterval is how often a random member is probed for failure.
	ProbeInterval time.Duration
	// ProbeTimeout is how long to wait for a probe's ack before asking
	// other members to probe indirectly; about one round trip.
	ProbeTimeout time.Duration
	// GossipInterval is how often queued broadcasts (joins, leaves, meta
	// updates) are sent to a few random members.
	GossipInterval time.Duration
	// PushPullInterval is how often a full state sync with one random member
	// runs; it repairs whatever gossip missed.
	PushPullInterval time.Duration
	// TCPTimeout bounds a stream connection (join, push/pull, TCP probe).
	TCPTimeout time.Duration
	// GossipToTheDeadTime is how long dead members still receive gossip, so
	// a falsely suspected node learns of it and refutes.
	GossipToTheDeadTime time.Duration
	// SuspicionMult scales how long a member stays suspect before it is
	// declared dead: SuspicionMult * log10(members) * ProbeInterval.
	SuspicionMult int
}

// LANTimings are memberlist's DefaultLANConfig periods.
func LANTimings() Timings {
	c := memberlist.DefaultLANConfig()
	return Timings{
		ProbeInterval:       c.ProbeInterval,
		ProbeTimeout:        c.ProbeTimeout,
		GossipInterval:      c.GossipInterval,
		PushPullInterval:    c.PushPullInterval,
		TCPTimeout:          c.TCPTimeout,
		GossipToTheDeadTime: c.GossipToTheDeadTime,
		SuspicionMult:       c.SuspicionMult,
	}
}

// TestTimings cut every period to tens of milliseconds, so a mesh on
// 127.0.0.1 converges within a test. They are too tight for real networks.
func TestTimings() Timings {
	return Timings{
		ProbeInterval:       100 * time.Millisecond,
		ProbeTimeout:        50 * time.Millisecond,
		GossipInterval:      10 * time.Millisecond,
		PushPullInterval:    200 * time.Millisecond,
		TCPTimeout:          time.Second,
		GossipToTheDeadTime: 500 * time.Millisecond,
		SuspicionMult:       3,
	}
}

// DefaultConfig returns a config for a LAN: listeners on
// 0.0.0.0:DefaultPort, LAN timings, no encryption. Set Name (required) and
// SecretKey.
func DefaultConfig() Config {
	return Config{
		BindAddr:      "0.0.0.0",
		BindPort:      DefaultPort,
		Scale:         1,
		Timings:       LANTimings(),
		EventBuffer:   256,
		Retention:     24 * time.Hour,
		UpdateTimeout: 5 * time.Second,
	}
}

// TestConfig returns DefaultConfig on 127.0.0.1 with a free port and
// TestTimings. Set Name.
func TestConfig() Config {
	c := DefaultConfig()
	c.BindAddr = "127.0.0.1"
	c.BindPort = 0
	c.Timings = TestTimings()
	c.UpdateTimeout = 2 * time.Second
	return c
}

// withDefaults validates c and fills in zero fields.
func (c Config) withDefaults() (Config, error) {
	if c.Name == "" {
		return c, fmt.Errorf("config: empty name: %w", ErrBadConfig)
	}
	if n := len(c.SecretKey); n != 0 && n != 32 {
		return c, fmt.Errorf("config: secret key is %d bytes, want 32: %w", n, ErrBadConfig)
	}
	if c.Scale < 0 {
		return c, fmt.Errorf("config: scale %v: %w", c.Scale, ErrBadConfig)
	}
	if c.BindPort < 0 || c.BindPort > 65535 || c.AdvertisePort < 0 || c.AdvertisePort > 65535 {
		return c, fmt.Errorf("config: port out of range: %w", ErrBadConfig)
	}
	if c.Scale == 0 {
		c.Scale = 1
	}
	if c.BindAddr == "" {
		c.BindAddr = "0.0.0.0"
	}
	t, lan := &c.Timings, LANTimings()
	for _, d := range []struct {
		v   *time.Duration
		def time.Duration
	}{
		{&t.ProbeInterval, lan.ProbeInterval},
		{&t.ProbeTimeout, lan.ProbeTimeout},
		{&t.GossipInterval, lan.GossipInterval},
		{&t.PushPullInterval, lan.PushPullInterval},
		{&t.TCPTimeout, lan.TCPTimeout},
		{&t.GossipToTheDeadTime, lan.GossipToTheDeadTime},
	} {
		if *d.v < 0 {
			return c, fmt.Errorf("config: negative timing %v: %w", *d.v, ErrBadConfig)
		}
		if *d.v == 0 {
			*d.v = d.def
		}
		*d.v = time.Duration(float64(*d.v) * c.Scale)
	}
	if t.SuspicionMult <= 0 {
		t.SuspicionMult = lan.SuspicionMult
	}
	if c.EventBuffer <= 0 {
		c.EventBuffer = 256
	}
	if c.Retention <= 0 {
		c.Retention = 24 * time.Hour
	}
	if c.UpdateTimeout <= 0 {
		c.UpdateTimeout = 5 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, nil
}

// memberlistConfig builds memberlist's config from a config that went
// through withDefaults, wiring the delegates to g.
func (c Config) memberlistConfig(g *Gossip) *memberlist.Config {
	mc := memberlist.DefaultLANConfig()
	mc.Name = c.Name
	mc.BindAddr = c.BindAddr
	mc.BindPort = c.BindPort
	mc.AdvertiseAddr = c.AdvertiseAddr
	mc.AdvertisePort = c.AdvertisePort
	if mc.AdvertisePort == 0 {
		mc.AdvertisePort = c.BindPort
	}
	if len(c.SecretKey) > 0 {
		mc.SecretKey = append([]byte(nil), c.SecretKey...)
	}
	mc.ProbeInterval = c.Timings.ProbeInterval
	mc.ProbeTimeout = c.Timings.ProbeTimeout
	mc.GossipInterval = c.Timings.GossipInterval
	mc.PushPullInterval = c.Timings.PushPullInterval
	mc.TCPTimeout = c.Timings.TCPTimeout
	mc.GossipToTheDeadTime = c.Timings.GossipToTheDeadTime
	mc.SuspicionMult = c.Timings.SuspicionMult
	// A node that crashed and comes back on another address (a new DHCP
	// lease, a new port) may take its name back once it has been dead
	// this long; only holders of the mesh key can gossip at all.
	mc.DeadNodeReclaimTime = c.Timings.GossipToTheDeadTime
	mc.Delegate = &metaDelegate{g: g}
	mc.Events = &eventDelegate{g: g}
	mc.Merge = &mergeDelegate{g: g}
	mc.Alive = &mergeDelegate{g: g}
	mc.Conflict = &conflictDelegate{g: g}
	mc.LogOutput = nil
	mc.Logger = newStdLogger(c.Logger)
	return mc
}
