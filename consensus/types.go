package consensus

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/drvmesh/drvmesh/store"
)

// Build states.
const (
	StateQueued    = "queued"
	StateScheduled = "scheduled"
	StateBuilding  = "building"
	StateSucceeded = "succeeded"
	StateFailed    = "failed"
	StateCanceled  = "canceled"
)

// States lists every build state in index order.
var States = []string{StateQueued, StateScheduled, StateBuilding, StateSucceeded, StateFailed, StateCanceled}

// Attempt results.
const (
	ResultSucceeded     = "succeeded"
	ResultFailed        = "failed"
	ResultLost          = "lost"
	ResultMissingInputs = "missing-inputs"
	ResultCanceled      = "canceled"
)

// Event types, appended by the FSM when builds change state.
const (
	EventBuildSubmitted     = "build-submitted"
	EventBuildStarted       = "build-started"
	EventBuildSucceeded     = "build-succeeded"
	EventBuildFailed        = "build-failed"
	EventBuildCanceled      = "build-canceled"
	EventBuildMissingInputs = "build-missing-inputs"
	// EventBuildMismatch: a build's output nar differs from the one the
	// mesh had recorded for that store path; once per Mismatch record.
	EventBuildMismatch = "build-mismatch"
)

// Build is one requested build of a derivation. Its JSON form is the build
// object of docs/contract.md; the fields after Error are extras for scheduling.
type Build struct {
	ID         string            `json:"id"`
	Derivation string            `json:"derivation"`
	System     string            `json:"system"`
	State      string            `json:"state"`
	Priority   int               `json:"priority"`
	Tags       map[string]string `json:"tags"`
	Node       string            `json:"node"`
	Attempts   []Attempt         `json:"attempts"`
	Outputs    []Output          `json:"outputs"`
	CreatedAt  time.Time         `json:"created_at"`
	StartedAt  time.Time         `json:"started_at,omitzero"`
	FinishedAt time.Time         `json:"finished_at,omitzero"`
	Error      string            `json:"error"`

	DeferUntil  time.Time `json:"defer_until,omitzero"`
	Retries     int       `json:"retries,omitempty"` // failed attempts allowed before the build fails
	FailedNodes []string  `json:"failed_nodes,omitempty"`
	WaitingFor  []string  `json:"waiting_for,omitempty"` // input store paths no node holds
}

// Attempt is one run of a build on a node.
type Attempt struct {
	Node       string    `json:"node"`
	StartedAt  time.Time `json:"started_at"`
	FinishedAt time.Time `json:"finished_at,omitzero"`
	Result     string    `json:"result,omitempty"`
	Error      string    `json:"error,omitempty"`
}

// Output is one built output of a succeeded build.
type Output struct {
	Name    string `json:"name"`
	Path    string `json:"path"`
	NarHash string `json:"nar_hash"`
	NarSize int64  `json:"nar_size"`
}

// Drv is the scheduling metadata of a derivation, keyed by its store path.
type Drv struct {
	Path      string              `json:"path"`
	System    string              `json:"system"`
	InputDrvs map[string][]string `json:"input_drvs,omitempty"`
	InputSrcs []string            `json:"input_srcs,omitempty"`
	Outputs   map[string]string   `json:"outputs,omitempty"` // output name → store path
	Features  []string            `json:"features,omitempty"`
}

// NarInfo is what the mesh knows about one store path's nar, keyed by the
// hash part of the store path. It holds every field a Nix narinfo needs
// (URL is derived from Files by the serving node).
type NarInfo struct {
	StorePath  string    `json:"store_path"`
	NarHash    string    `json:"nar_hash"` // "sha256:<nix32>"
	NarSize    int64     `json:"nar_size"`
	References []string  `json:"references,omitempty"` // basenames, as in a narinfo
	Deriver    string    `json:"deriver,omitempty"`    // basename
	System     string    `json:"system,omitempty"`
	CA         string    `json:"ca,omitempty"`
	Sigs       []string  `json:"sigs,omitempty"`
	Files      []NarFile `json:"files,omitempty"`
	Holders    []string  `json:"holders,omitempty"` // node names, sorted
}

// Mismatch lists the different nars reported for one store path. The
// nar record of the path keeps the first one (and its holders); a report
// with another NarHash never replaces it and is kept here instead. Once a
// path has a Mismatch, every later report of it, agreeing or not, is
// added, so the record shows who produced what.
type Mismatch struct {
	Path string `json:"path"`
	// Derivation and Output name the build that reported a different
	// nar, when a finishing build did (FinishOutputs).
	Derivation string           `json:"derivation,omitempty"`
	Output     string           `json:"output,omitempty"`
	Results    []MismatchResult `json:"results"`
}

// MismatchResult is one node's nar of a mismatched path.
type MismatchResult struct {
	Node    string `json:"node"` // empty when the report named no holder
	NarHash string `json:"nar_hash"`
	NarSize int64  `json:"nar_size,omitempty"`
	// At is when the mesh recorded the report; zero for the nar the
	// path's record held when the mismatch began.
	At time.Time `json:"at,omitzero"`
}

// NarFile is one stored (compressed) form of a nar.
type NarFile struct {
	Compression string `json:"compression"` // "xz", "zstd", "none"
	FileHash    string `json:"file_hash"`
	FileSize    int64  `json:"file_size"`
}

// Node is the admission record of a mesh member.
type Node struct {
	Name            string    `json:"name"`
	HTTP            string    `json:"http"`
	Raft            string    `json:"raft"`
	P2P             string    `json:"p2p,omitempty"`
	PeerID          string    `json:"peer_id,omitempty"`
	CertFingerprint string    `json:"cert_fingerprint,omitempty"`
	AdmittedAt      time.Time `json:"admitted_at"`
	Voter           bool      `json:"voter"`

	// The fields below were added for trust; records written before them
	// decode with their zero values, which mean a trusted node owned by
	// itself (Trusted, OwnerName).

	// Kind is KindTrusted or KindVolunteer; empty means trusted.
	Kind string `json:"kind,omitempty"`
	// Owner is who runs the machine; empty means the node's own name.
	Owner string `json:"owner,omitempty"`
	// NixKey is the node's own Nix public key line, "name:base64".
	NixKey string `json:"key,omitempty"`
	// Revoked nodes are refused everywhere (Authorize refuses every
	// command they issue); RevokedAt is when the mesh revoked them.
	Revoked   bool      `json:"revoked,omitempty"`
	RevokedAt time.Time `json:"revoked_at,omitzero"`
}

// Node kinds.
const (
	KindTrusted   = "trusted"
	KindVolunteer = "volunteer"
)

// Trusted reports whether the node is one of the farm's own machines:
// its Kind is KindTrusted or empty (records from before kinds existed).
func (n *Node) Trusted() bool { return n.Kind == "" || n.Kind == KindTrusted }

// OwnerName is the node's owner, its own name when none is recorded.
func (n *Node) OwnerName() string {
	if n.Owner == "" {
		return n.Name
	}
	return n.Owner
}

// normalized returns a copy of n with the defaults of Kind and Owner
// written out, so two records that mean the same compare equal.
func (n *Node) normalized() Node {
	c := *n
	if c.Kind == "" {
		c.Kind = KindTrusted
	}
	c.Owner = n.OwnerName()
	return c
}

// Event is a build state change waiting for its hook; AckEvents removes it.
type Event struct {
	Seq     uint64    `json:"seq"`
	Type    string    `json:"type"`
	BuildID string    `json:"build_id"`
	Time    time.Time `json:"time"`
}

// Settings are the mesh-wide settings, replaced as a whole by SetSettings.
type Settings struct {
	Strategy         string            `json:"strategy,omitempty"`
	JoinTokenHash    string            `json:"join_token_hash,omitempty"`
	JoinTokenExpires time.Time         `json:"join_token_expires,omitzero"`
	AdminTokenHash   string            `json:"admin_token_hash,omitempty"`
	MinCopies        int               `json:"min_copies,omitempty"`
	Retries          int               `json:"retries,omitempty"` // default Build.Retries
	Extra            map[string]string `json:"extra,omitempty"`

	// Added for trust; zero in settings written before them.

	// Agree is K: a volunteer-built output is mesh-signed once volunteers
	// of K distinct owners report the same NarHash; 0 means
	// DefaultAgree (AgreeK).
	Agree int `json:"agree,omitempty"`
	// VolunteerTokenHash and VolunteerTokenExpires are the volunteer
	// join token's, as JoinTokenHash and JoinTokenExpires are the
	// trusted one's.
	VolunteerTokenHash    string    `json:"volunteer_token_hash,omitempty"`
	VolunteerTokenExpires time.Time `json:"volunteer_token_expires,omitzero"`
}

// DefaultAgree is K when the settings name none.
const DefaultAgree = 2

// AgreeK is the number of distinct owners whose volunteers must agree on
// an output's NarHash: Agree, or DefaultAgree when it is 0.
func (s *Settings) AgreeK() int {
	if s.Agree <= 0 {
		return DefaultAgree
	}
	return s.Agree
}

// NewBuildID returns a fresh build id: 16 bytes, the first 8 the big-endian
// unix nanoseconds of t and the rest random, in lowercase hex. Ids sort by
// creation time, so the builds bucket is in creation order.
func NewBuildID(t time.Time) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(t.UnixNano()))
	if _, err := rand.Read(b[8:]); err != nil {
		panic(fmt.Sprintf("read random: %v", err))
	}
	return hex.EncodeToString(b[:])
}

// buildKey decodes a build id into its 16-byte bucket key.
func buildKey(id string) ([]byte, error) {
	if len(id) != 32 {
		return nil, fmt.Errorf("build id %q: %w", id, ErrBadCommand)
	}
	k, err := hex.DecodeString(id)
	if err != nil {
		return nil, fmt.Errorf("build id %q: %w", id, ErrBadCommand)
	}
	return k, nil
}

// BuildIDTime returns the creation time encoded in a build id.
func BuildIDTime(id string) (time.Time, error) {
	k, err := buildKey(id)
	if err != nil {
		return time.Time{}, err
	}
	return time.Unix(0, int64(binary.BigEndian.Uint64(k[:8]))).UTC(), nil
}

// HashPart returns the 32-character hash part of a store path
// (/nix/store/<hash>-<name>), or of a bare <hash>-<name> basename: the key
// of nar records. It is store.HashPart that also rejects an empty name,
// with an error wrapping ErrBadCommand.
func HashPart(storePath string) (string, error) {
	h := store.HashPart(storePath)
	if h == "" || strings.HasSuffix(storePath, "/"+h+"-") || storePath == h+"-" {
		return "", fmt.Errorf("store path %q: %w", storePath, ErrBadCommand)
	}
	return h, nil
}

func validState(s string) bool {
	for _, x := range States {
		if x == s {
			return true
		}
	}
	return false
}

// Finished reports whether a build state is final.
func Finished(state string) bool {
	return state == StateSucceeded || state == StateFailed || state == StateCanceled
}
