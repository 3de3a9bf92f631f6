package gossip

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/hashicorp/memberlist"
)

// MaxMetaSize is the largest encoded Meta memberlist carries for a node.
const MaxMetaSize = memberlist.MetaMaxSize

// Meta is what a node tells the mesh about itself: its build capacity and
// the addresses of its other listeners. It rides on every memberlist alive
// message, so it is kept small; EncodeMeta refuses one that does not fit in
// MaxMetaSize bytes.
type Meta struct {
	// Systems are the platforms the node builds for, e.g. "x86_64-linux".
	Systems []string
	// Features are the node's system features, e.g. "kvm", "big-parallel".
	Features []string
	// MaxJobs is the number of builds the node runs at once.
	MaxJobs int
	// Running is the number of builds the node runs now.
	Running int
	// Load is the 1-minute load average.
	Load float64
	// FreeDisk is the free space of the store's file system, in bytes.
	FreeDisk uint64
	// HTTP is the address of the node's HTTP API and binary cache (host:port).
	HTTP string
	// Raft is the node's raft transport address (host:port).
	Raft string
	// P2P is the node's libp2p listen address (a multiaddr).
	P2P string
	// PeerID is the node's libp2p peer ID.
	PeerID string
	// Version is the drvmesh version the node runs.
	Version string
	// Builder is the node's builder kind: "nix", "guix" or "none".
	Builder string
}

// metaVersion is the first byte of every encoded Meta. A decoder refuses
// other versions; within a version, new fields get new tags and old
// decoders skip tags they do not know.
const metaVersion = 1

// Field tags of the encoding. Append only; never reuse a number.
const (
	tagSystem   = 1 // repeated, one string per system
	tagFeature  = 2 // repeated, one string per feature
	tagMaxJobs  = 3 // zigzag varint
	tagRunning  = 4 // zigzag varint
	tagLoad     = 5 // 8 bytes, IEEE 754 little-endian
	tagFreeDisk = 6 // uvarint
	tagHTTP     = 7
	tagRaft     = 8
	tagP2P      = 9
	tagPeerID   = 10
	tagVersion  = 11
	tagBuilder  = 12
	tagLeaving  = 13 // empty; set by Leave, not part of Meta
)

// leaveMarkSize is what the leave mark adds to an encoding; EncodeMeta keeps
// that much room free so a node can always announce its leave.
const leaveMarkSize = 2

// EncodeMeta packs m as a version byte followed by fields, each a tag byte,
// a uvarint length and the value; zero-valued fields are left out. It
// returns ErrMetaTooLarge, never a truncated encoding, when the result
// exceeds MaxMetaSize less 2 bytes (kept for the mark Leave adds), and
// ErrBadMeta for a Load that is not a finite number.
func EncodeMeta(m Meta) ([]byte, error) {
	b, err := encodeMeta(m, false)
	if err == nil && len(b) > MaxMetaSize-leaveMarkSize {
		err = fmt.Errorf("encode meta: %d bytes, limit %d: %w", len(b), MaxMetaSize-leaveMarkSize, ErrMetaTooLarge)
	}
	return b, err
}

// encodeMeta is EncodeMeta with the leave mark, which tells peers that
// this node's coming death is a graceful leave.
func encodeMeta(m Meta, leaving bool) ([]byte, error) {
	if math.IsNaN(m.Load) || math.IsInf(m.Load, 0) {
		return nil, fmt.Errorf("encode meta: load %v: %w", m.Load, ErrBadMeta)
	}
	b := make([]byte, 0, 128)
	b = append(b, metaVersion)
	for _, s := range m.Systems {
		b = appendField(b, tagSystem, []byte(s))
	}
	for _, s := range m.Features {
		b = appendField(b, tagFeature, []byte(s))
	}
	if m.MaxJobs != 0 {
		b = appendField(b, tagMaxJobs, binary.AppendVarint(nil, int64(m.MaxJobs)))
	}
	if m.Running != 0 {
		b = appendField(b, tagRunning, binary.AppendVarint(nil, int64(m.Running)))
	}
	if m.Load != 0 {
		b = appendField(b, tagLoad, binary.LittleEndian.AppendUint64(nil, math.Float64bits(m.Load)))
	}
	if m.FreeDisk != 0 {
		b = appendField(b, tagFreeDisk, binary.AppendUvarint(nil, m.FreeDisk))
	}
	for _, f := range []struct {
		tag byte
		s   string
	}{
		{tagHTTP, m.HTTP}, {tagRaft, m.Raft}, {tagP2P, m.P2P},
		{tagPeerID, m.PeerID}, {tagVersion, m.Version}, {tagBuilder, m.Builder},
	} {
		if f.s != "" {
			b = appendField(b, f.tag, []byte(f.s))
		}
	}
	if leaving {
		b = appendField(b, tagLeaving, nil)
	}
	if len(b) > MaxMetaSize {
		return nil, fmt.Errorf("encode meta: %d bytes, limit %d: %w", len(b), MaxMetaSize, ErrMetaTooLarge)
	}
	return b, nil
}

func appendField(b []byte, tag byte, v []byte) []byte {
	b = append(b, tag)
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

// DecodeMeta unpacks what EncodeMeta produced. Any malformed input (empty,
// unknown version, a length running past the end, a number that does not
// fill its field exactly, a non-finite load) yields ErrBadMeta; unknown tags
// are skipped so newer nodes can add fields.
func DecodeMeta(b []byte) (Meta, error) {
	m, _, err := decodeMeta(b)
	return m, err
}

// decodeMeta is DecodeMeta that also reports the leave mark.
func decodeMeta(b []byte) (m Meta, leaving bool, err error) {
	if len(b) == 0 {
		return Meta{}, false, fmt.Errorf("decode meta: empty: %w", ErrBadMeta)
	}
	if b[0] != metaVersion {
		return Meta{}, false, fmt.Errorf("decode meta: version %d: %w", b[0], ErrBadMeta)
	}
	if len(b) > MaxMetaSize {
		return Meta{}, false, fmt.Errorf("decode meta: %d bytes: %w", len(b), ErrBadMeta)
	}
	rest := b[1:]
	for len(rest) > 0 {
		tag := rest[0]
		n, k := binary.Uvarint(rest[1:])
		if k <= 0 || n > uint64(len(rest)-1-k) {
			return Meta{}, false, fmt.Errorf("decode meta: tag %d: bad length: %w", tag, ErrBadMeta)
		}
		v := rest[1+k : 1+k+int(n)]
		rest = rest[1+k+int(n):]
		switch tag {
		case tagSystem:
			m.Systems = append(m.Systems, string(v))
		case tagFeature:
			m.Features = append(m.Features, string(v))
		case tagMaxJobs:
			m.MaxJobs, err = decodeInt(v)
		case tagRunning:
			m.Running, err = decodeInt(v)
		case tagLoad:
			m.Load, err = decodeFloat(v)
		case tagFreeDisk:
			m.FreeDisk, err = decodeUint(v)
		case tagHTTP:
			m.HTTP = string(v)
		case tagRaft:
			m.Raft = string(v)
		case tagP2P:
			m.P2P = string(v)
		case tagPeerID:
			m.PeerID = string(v)
		case tagVersion:
			m.Version = string(v)
		case tagBuilder:
			m.Builder = string(v)
		case tagLeaving:
			leaving = true
		}
		if err != nil {
			return Meta{}, false, fmt.Errorf("decode meta: tag %d: %w", tag, err)
		}
	}
	return m, leaving, nil
}

func decodeInt(v []byte) (int, error) {
	x, k := binary.Varint(v)
	if k <= 0 || k != len(v) || x < math.MinInt || x > math.MaxInt {
		return 0, fmt.Errorf("bad varint: %w", ErrBadMeta)
	}
	return int(x), nil
}

func decodeUint(v []byte) (uint64, error) {
	x, k := binary.Uvarint(v)
	if k <= 0 || k != len(v) {
		return 0, fmt.Errorf("bad uvarint: %w", ErrBadMeta)
	}
	return x, nil
}

func decodeFloat(v []byte) (float64, error) {
	if len(v) != 8 {
		return 0, fmt.Errorf("load is %d bytes: %w", len(v), ErrBadMeta)
	}
	f := math.Float64frombits(binary.LittleEndian.Uint64(v))
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, fmt.Errorf("load %v: %w", f, ErrBadMeta)
	}
	return f, nil
}
