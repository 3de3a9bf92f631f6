package cluster

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"

	"github.com/drvmesh/drvmesh/consensus"
)

// Every command reaches the leader with the identity of who issued it
// (docs/trust.md, "Authority"). A caller binds a role to the Forwarder
// (As); the leader builds the consensus.Principal: from its own name and
// the role for its own callers, from the verified certificate of the
// cluster port's peer and that node's record for a forwarded command.
// FSM.Authorize then decides before raft commits anything.

// Role is what a caller of the Forwarder acts as.
type Role uint8

// Roles. RoleLeader is never accepted from another node: only the
// leader's own loops hold it, and its commands are never forwarded.
const (
	// RoleNode is the node speaking for itself (its builds, nars and
	// addresses).
	RoleNode Role = iota
	// RoleAdmin is a client whose admin token this node checked.
	RoleAdmin
	// RoleUser is a client whose user token this node checked.
	RoleUser
	// RoleLeader is the raft leader's own loops and the bootstrap.
	RoleLeader
)

var roleNames = [...]string{RoleNode: "node", RoleAdmin: "admin", RoleUser: "user", RoleLeader: "leader"}

// String is the role's wire name.
func (r Role) String() string {
	if int(r) < len(roleNames) {
		return roleNames[r]
	}
	return fmt.Sprintf("role-%d", byte(r))
}

// parseRole reads a wire name; "" is RoleNode, the least a node may act as.
func parseRole(s string) (Role, error) {
	if s == "" {
		return RoleNode, nil
	}
	for r, name := range roleNames {
		if name == s {
			return Role(r), nil
		}
	}
	return 0, fmt.Errorf("unknown role %q", s)
}

// headerRole carries the role a forwarded command claims.
const headerRole = "Drvmesh-Role"

// forbid refuses a forwarded command whose sender the leader does not
// accept as the issuer it claims to be.
func forbid(format string, args ...any) error {
	return fmt.Errorf("forwarded command: %s: %w", fmt.Sprintf(format, args...), consensus.ErrUnauthorized)
}

// localPrincipal is this node (name) acting in role.
func localPrincipal(st *consensus.FSM, name string, role Role) consensus.Principal {
	switch role {
	case RoleLeader:
		return consensus.LeaderPrincipal(name)
	case RoleAdmin:
		return consensus.AdminPrincipal(name)
	case RoleUser:
		return consensus.UserPrincipal(name)
	}
	rec, _ := st.Node(name)
	if rec == nil {
		return consensus.Principal{Node: name}
	}
	return consensus.NodePrincipal(rec)
}

// peerPrincipal is the issuer of a forwarded request: the node its
// verified client certificate names, whose fingerprint must be the one
// that node's record holds, acting in the role the request claims
// (never RoleLeader). The rules of FSM.Authorize decide the rest: a
// volunteer's node claiming admin is refused there.
func peerPrincipal(st *consensus.FSM, r *http.Request) (consensus.Principal, error) {
	cert := peerCert(r)
	if cert == nil {
		return consensus.Principal{}, forbid("no client certificate")
	}
	role, err := parseRole(r.Header.Get(headerRole))
	if err != nil {
		return consensus.Principal{}, forbid("%v", err)
	}
	if role == RoleLeader {
		return consensus.Principal{}, forbid("node %q claims the leader's role, which no other node holds", cert.Subject.CommonName)
	}
	rec, err := memberRecord(st, cert)
	if err != nil {
		return consensus.Principal{}, err
	}
	switch role {
	case RoleAdmin:
		p := consensus.AdminPrincipal(rec.Name)
		p.Trusted, p.Owner = rec.Trusted(), rec.OwnerName()
		return p, nil
	case RoleUser:
		p := consensus.UserPrincipal(rec.Name)
		p.Trusted, p.Owner = rec.Trusted(), rec.OwnerName()
		return p, nil
	}
	return consensus.NodePrincipal(rec), nil
}

// memberRecord is the record of the node cert names, when cert is the
// certificate that record holds and the node is not revoked. A record
// without a fingerprint (a mesh's first node recorded itself without one
// before fingerprints were checked) is matched by name: only a holder of
// the CA key can issue a certificate for that name, and the node fills
// its fingerprint in once it runs this version (LegacyRecord).
func memberRecord(st *consensus.FSM, cert *x509.Certificate) (*consensus.Node, error) {
	name := cert.Subject.CommonName
	rec, err := st.Node(name)
	if errors.Is(err, consensus.ErrNotFound) || err == nil && rec == nil {
		return nil, forbid("node %q is not a member", name)
	}
	if err != nil {
		return nil, fmt.Errorf("read the record of node %q: %w", name, err)
	}
	if fp := fingerprint(cert); rec.CertFingerprint != "" && fp != rec.CertFingerprint {
		return nil, forbid("node %q presented a certificate its record does not hold", name)
	}
	if rec.Revoked {
		return nil, forbid("node %q is revoked", name)
	}
	return rec, nil
}

// peerCert is the verified client certificate of a cluster port request.
func peerCert(r *http.Request) *x509.Certificate {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return nil
	}
	return r.TLS.PeerCertificates[0]
}

// fingerprint is the hex SHA-256 of a certificate's DER bytes, as
// recorded in a node's record (certFingerprint).
func fingerprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return hex.EncodeToString(sum[:])
}

// Fingerprint is the fingerprint of this node's own certificate, for its
// record.
func (c *Creds) Fingerprint() string {
	if len(c.ServerTLS.Certificates) == 0 || len(c.ServerTLS.Certificates[0].Certificate) == 0 {
		return ""
	}
	sum := sha256.Sum256(c.ServerTLS.Certificates[0].Certificate[0])
	return hex.EncodeToString(sum[:])
}

// Applier writes through the leader as one role of this node: the
// commands it applies carry that role (Forwarder.As).
type Applier struct {
	f    *Forwarder
	role Role
}

// As returns the Applier whose commands this node issues in role.
func (f *Forwarder) As(role Role) *Applier { return &Applier{f: f, role: role} }

// ApplyAndCatchUp replicates cmd through the leader and returns the ids
// its result names once this node's state includes it too (read your
// writes).
func (a *Applier) ApplyAndCatchUp(ctx context.Context, cmd consensus.Command) ([]string, error) {
	return a.f.applyWith(ctx, cmd, a.role, true)
}

// ApplyAtLeader is ApplyAndCatchUp without read-your-writes: it returns
// once the leader has applied cmd, without waiting for this node's state
// to catch up (which takes until the leader's next message). For the
// agent's own reports, which nothing here reads back at once.
func (a *Applier) ApplyAtLeader(ctx context.Context, cmd consensus.Command) ([]string, error) {
	return a.f.applyWith(ctx, cmd, a.role, false)
}

// CatchUp waits until this node's state includes raft index idx (see
// Forwarder.CatchUp).
func (a *Applier) CatchUp(ctx context.Context, idx uint64) error { return a.f.CatchUp(ctx, idx) }

// CatchUpWithLeader makes a read linearizable (see
// Forwarder.CatchUpWithLeader).
func (a *Applier) CatchUpWithLeader(ctx context.Context) error { return a.f.CatchUpWithLeader(ctx) }

// LegacyRecord reports whether rec, this node's own record, lacks the
// fingerprint of its certificate, and returns the record with it filled
// in. Only an admin may change a record's fingerprint: a trusted node
// writes it as one.
func (c *Creds) LegacyRecord(rec *consensus.Node) (consensus.Node, bool) {
	if rec == nil || rec.CertFingerprint != "" || !rec.Trusted() {
		return consensus.Node{}, false
	}
	fixed := *rec
	fixed.CertFingerprint = c.Fingerprint()
	return fixed, fixed.CertFingerprint != ""
}
