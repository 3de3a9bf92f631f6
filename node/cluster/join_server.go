package cluster

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/drvmesh/drvmesh/consensus"
)

// JoinServer is a member's side of the join protocol: it admits a new
// machine that proves the join token, records it and seals the grant.
type JoinServer struct {
	creds *Creds
	state func() *consensus.FSM
	fwd   *Forwarder
	peers *Peers
	log   *slog.Logger
}

// NewJoinServer admits with creds, records through fwd and hands out the
// live peers.
func NewJoinServer(creds *Creds, state func() *consensus.FSM, fwd *Forwarder, peers *Peers, log *slog.Logger) *JoinServer {
	return &JoinServer{creds: creds, state: state, fwd: fwd, peers: peers, log: log}
}

// ServeHTTP admits a new machine that proves the join token.
func (j *JoinServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var req JoinRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&req); err != nil {
		apiError(w, http.StatusBadRequest, "malformed join request: %v", err)
		return
	}
	if err := checkNodeName(req.Name); err != nil {
		apiError(w, http.StatusBadRequest, "%v", err)
		return
	}
	if req.Nonce == "" || !checkJoinProof(j.creds.Secrets.JoinToken, &req) {
		j.log.Warn("join refused: wrong token", keyRemote, r.RemoteAddr, keyMember, req.Name)
		apiError(w, http.StatusUnauthorized, "wrong join token")
		return
	}
	st := j.state()
	settings, err := st.Settings()
	if err != nil {
		apiError(w, http.StatusServiceUnavailable, "mesh state unavailable: %v", err)
		return
	}
	if settings.JoinTokenHash != "" && settings.JoinTokenHash != TokenHash(j.creds.Secrets.JoinToken) ||
		!settings.JoinTokenExpires.IsZero() && time.Now().After(settings.JoinTokenExpires) {
		apiError(w, http.StatusUnauthorized, "the join token has expired; ask an operator for a new one")
		return
	}
	if old, err := st.Node(req.Name); err == nil && old != nil {
		apiError(w, http.StatusConflict, "a node named %q is already a member; choose another --name, or remove the old node first", req.Name)
		return
	}
	pub, err := parsePublicKeyPEM([]byte(req.PublicKey))
	if err != nil {
		apiError(w, http.StatusBadRequest, "bad public key: %v", err)
		return
	}
	cert, err := j.creds.CA.Issue(req.Name, pub)
	if err != nil {
		apiError(w, http.StatusInternalServerError, "%v", err)
		return
	}
	rec := consensus.Node{
		Name: req.Name, HTTP: req.HTTP, Raft: req.Cluster, PeerID: req.PeerID,
		CertFingerprint: certFingerprint(cert), AdmittedAt: time.Now().UTC(),
	}
	// This member checked the token: it records the node as an admin.
	if _, err := j.fwd.As(RoleAdmin).ApplyAndCatchUp(r.Context(), &consensus.PutNode{Node: rec}); err != nil {
		apiError(w, http.StatusServiceUnavailable, "record the new node: %v", err)
		return
	}
	grant := joinGrant{Secrets: j.creds.Secrets, NodeCert: string(cert), Gossip: j.peers.Live()}
	plain, _ := json.Marshal(grant)
	sealed, err := seal(sealKey(j.creds.Secrets.JoinToken, req.Nonce), plain)
	if err != nil {
		apiError(w, http.StatusInternalServerError, "%v", err)
		return
	}
	j.log.Info("admitted node", keyMember, req.Name, keyRemote, r.RemoteAddr)
	writeJSON(w, http.StatusOK, joinResponse{Sealed: sealed})
}

// checkNodeName allows names that are safe in paths, logs and certificates.
func checkNodeName(s string) error {
	if s == "" || len(s) > 63 {
		return fmt.Errorf("%w: node name must be 1 to 63 characters", ErrBadRequest)
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("%w: node name %q may hold only letters, digits, '-', '_' and '.'", ErrBadRequest, s)
		}
	}
	return nil
}
