package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/drvmesh/drvmesh/consensus"
	"github.com/drvmesh/drvmesh/internal/httplimit"
)

// Bounds of the join server.
const (
	// joinWindow is how far a join request's time may lie from the
	// member's clock; its nonce is remembered for twice as long.
	joinWindow = 10 * time.Minute
	// maxNonces bounds the nonces remembered; only holders of the token
	// add to them, at the rate joinBurst and joinEvery allow.
	maxNonces = 100_000
	// joinBurst attempts from one source address at once, then one every
	// joinEvery.
	joinBurst = 10
	joinEvery = 6 * time.Second
	// maxSources bounds the source addresses the rate remembers.
	maxSources = 10_000
)

// JoinServer is a member's side of the join protocol: it admits a new
// machine that proves the join token, records it and seals the grant.
type JoinServer struct {
	creds *Creds
	state func() *consensus.FSM
	fwd   *Forwarder
	peers *Peers
	log   *slog.Logger
	// rate limits attempts per source address; refusals logs a wrong
	// token once a minute per source.
	rate, refusals *httplimit.Rate
	nonces         nonceLog
}

// NewJoinServer admits with creds, records through fwd and hands out the
// live peers.
func NewJoinServer(creds *Creds, state func() *consensus.FSM, fwd *Forwarder, peers *Peers, log *slog.Logger) *JoinServer {
	return &JoinServer{
		creds: creds, state: state, fwd: fwd, peers: peers, log: log,
		rate:     httplimit.NewRate(joinBurst, joinEvery, maxSources),
		refusals: httplimit.NewRate(1, time.Minute, maxSources),
		nonces:   nonceLog{seen: map[string]time.Time{}},
	}
}

// ServeHTTP admits a new machine that proves the join token.
func (j *JoinServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	src := sourceOf(r)
	if ok, report := j.rate.Allow(src); !ok {
		if report {
			j.log.Warn("join attempts rate-limited", keyRemote, src)
		}
		w.Header().Set("Retry-After", fmt.Sprint(int(joinEvery.Seconds())))
		apiError(w, http.StatusTooManyRequests, "too many join attempts; try again later")
		return
	}
	req, ok := j.checkRequest(w, r, src)
	if !ok {
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
	j.log.Info("admitted node", keyMember, req.Name, keyRemote, src)
	writeJSON(w, http.StatusOK, joinResponse{Sealed: sealed})
}

// checkRequest reads a join request and checks its proof, time and
// nonce; on a refusal it has answered.
func (j *JoinServer) checkRequest(w http.ResponseWriter, r *http.Request, src string) (*JoinRequest, bool) {
	var req JoinRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&req); err != nil {
		apiError(w, http.StatusBadRequest, "malformed join request: %v", err)
		return nil, false
	}
	if err := checkNodeName(req.Name); err != nil {
		apiError(w, http.StatusBadRequest, "%v", err)
		return nil, false
	}
	for _, a := range []string{req.HTTP, req.Cluster} {
		if !isHostPort(a) {
			apiError(w, http.StatusBadRequest, "%v: address %q is not host:port", ErrBadRequest, a)
			return nil, false
		}
	}
	if req.Nonce == "" || len(req.Nonce) > 64 || !checkJoinProof(j.creds.Secrets.JoinToken, &req) {
		if ok, _ := j.refusals.Allow(src); ok {
			j.log.Warn("join refused: wrong token", keyRemote, src, keyMember, req.Name)
		}
		apiError(w, http.StatusUnauthorized, "wrong join token")
		return nil, false
	}
	now := time.Now()
	if at := time.Unix(req.Time, 0); at.Before(now.Add(-joinWindow)) || at.After(now.Add(joinWindow)) {
		apiError(w, http.StatusUnauthorized, "the join request is dated %s, more than %s from this member's clock", at.UTC().Format(time.RFC3339), joinWindow)
		return nil, false
	}
	switch err := j.nonces.use(req.Nonce, now); {
	case errors.Is(err, errNonceFull):
		apiError(w, http.StatusServiceUnavailable, "%v; try again later", err)
		return nil, false
	case err != nil:
		j.log.Warn("join refused: replayed request", keyRemote, src, keyMember, req.Name)
		apiError(w, http.StatusUnauthorized, "%v", err)
		return nil, false
	}
	return &req, true
}

// isHostPort reports whether addr is host:port with a numeric port and
// nothing else: no scheme, user, path or query. Members' addresses are
// their own text; only such an address is ever dialled.
func isHostPort(addr string) bool {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" || strings.ContainsAny(host, "/?#@% \t\r\n") {
		return false
	}
	p, err := strconv.Atoi(port)
	return err == nil && p > 0 && p < 65536
}

// sourceOf is the address a request came from, without its port.
func sourceOf(r *http.Request) string {
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return host
	}
	return r.RemoteAddr
}

// nonceLog remembers the nonces of accepted proofs for 2×joinWindow.
type nonceLog struct {
	mu   sync.Mutex
	seen map[string]time.Time // nonce → when it may be forgotten
}

// use records nonce, or refuses one seen before.
func (l *nonceLog) use(nonce string, now time.Time) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if until, ok := l.seen[nonce]; ok && now.Before(until) {
		return errNonceUsed
	}
	if len(l.seen) >= maxNonces {
		for n, until := range l.seen {
			if !now.Before(until) {
				delete(l.seen, n)
			}
		}
		if len(l.seen) >= maxNonces {
			return errNonceFull
		}
	}
	l.seen[nonce] = now.Add(2 * joinWindow)
	return nil
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
