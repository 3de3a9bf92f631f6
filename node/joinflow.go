package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/drvmesh/drvmesh/consensus"
	"github.com/drvmesh/drvmesh/gossip"
	"github.com/drvmesh/drvmesh/narcache"
)

const filePeers = "node/peers.json"

// joinMesh asks a member to admit this node and keeps what it grants.
func (n *Node) joinMesh(ctx context.Context) error {
	if n.cfg.JoinToken == "" {
		return fmt.Errorf("%w: joining needs --token (the join token printed by the mesh's first node, also in its DATA_DIR/join-token)", ErrBadToken)
	}
	key, err := newNodeKey()
	if err != nil {
		return err
	}
	pub, err := publicKeyPEM(&key.PublicKey)
	if err != nil {
		return err
	}
	// The libp2p identity is made now so the member can admit its peer id.
	id, err := narcache.LoadOrCreateIdentity(filepath.Join(n.cfg.DataDir, fileP2PKey))
	if err != nil {
		return err
	}
	pid, err := peerIDOf(id)
	if err != nil {
		return err
	}
	req := joinRequest{
		Name: n.cfg.Name, PublicKey: string(pub),
		HTTP: n.httpAdvertise(), Cluster: n.clusterAdvertise(), Gossip: n.gossipAdvertise(),
		PeerID: pid,
	}
	// Members may be electing a leader (503) or restarting: try each
	// address in turn for up to a minute. A refused token is final.
	var grant *joinGrant
	var errs []error
	deadline := time.Now().Add(time.Minute)
	for grant == nil && time.Now().Before(deadline) {
		errs = errs[:0]
		for _, addr := range n.cfg.Join {
			jctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			grant, err = requestJoin(jctx, addr, n.cfg.JoinToken, req)
			cancel()
			if err == nil {
				break
			}
			if errors.Is(err, ErrBadToken) || errors.Is(err, errJoinRefused) {
				return err
			}
			errs = append(errs, err)
		}
		if grant == nil {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Second):
			}
		}
	}
	if grant == nil {
		return fmt.Errorf("no member admitted this node (is --join right and the mesh up?): %w", errors.Join(errs...))
	}
	for _, f := range []struct {
		rel  string
		data []byte
	}{
		{fileNodeKey, keyPEM(key)},
		{fileNodeCert, []byte(grant.NodeCert)},
		{fileJoinToken, []byte(grant.Secrets.JoinToken + "\n")},
	} {
		if err := writeSecretFile(n.cfg.DataDir, f.rel, f.data); err != nil {
			return err
		}
	}
	if err := writeJSONFile(n.cfg.DataDir, filePeers, grant.Gossip); err != nil {
		return err
	}
	if err := writeJSONFile(n.cfg.DataDir, fileSecrets, grant.Secrets); err != nil {
		return err
	}
	if err := writeJSONFile(n.cfg.DataDir, fileIdentity, identity{Name: n.cfg.Name}); err != nil {
		return err
	}
	n.log.Info("admitted to the mesh", "mesh", grant.Secrets.MeshID, "via", n.cfg.Join)
	return n.loadState()
}

// handleJoin admits a new machine that proves the join token.
func (n *Node) handleJoin(w http.ResponseWriter, r *http.Request) {
	var req joinRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&req); err != nil {
		apiError(w, http.StatusBadRequest, "malformed join request: %v", err)
		return
	}
	if err := checkNodeName(req.Name); err != nil {
		apiError(w, http.StatusBadRequest, "%v", err)
		return
	}
	if req.Nonce == "" || !checkJoinProof(n.secrets.JoinToken, &req) {
		n.log.Warn("join refused: wrong token", keyRemote, r.RemoteAddr, "name", req.Name)
		apiError(w, http.StatusUnauthorized, "wrong join token")
		return
	}
	st := n.raft.State()
	settings, err := st.Settings()
	if err != nil {
		apiError(w, http.StatusServiceUnavailable, "mesh state unavailable: %v", err)
		return
	}
	if settings.JoinTokenHash != "" && settings.JoinTokenHash != tokenHash(n.secrets.JoinToken) ||
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
	cert, err := n.ca.Issue(req.Name, pub)
	if err != nil {
		apiError(w, http.StatusInternalServerError, "%v", err)
		return
	}
	rec := consensus.Node{
		Name: req.Name, HTTP: req.HTTP, Raft: req.Cluster, PeerID: req.PeerID,
		CertFingerprint: certFingerprint(cert), AdmittedAt: time.Now().UTC(),
	}
	if _, err := n.apply(r.Context(), &consensus.PutNode{Node: rec}); err != nil {
		apiError(w, http.StatusServiceUnavailable, "record the new node: %v", err)
		return
	}
	grant := joinGrant{Secrets: n.secrets, NodeCert: string(cert), Gossip: n.liveGossipAddrs()}
	plain, _ := json.Marshal(grant)
	sealed, err := seal(sealKey(n.secrets.JoinToken, req.Nonce), plain)
	if err != nil {
		apiError(w, http.StatusInternalServerError, "%v", err)
		return
	}
	n.log.Info("admitted node", "name", req.Name, keyRemote, r.RemoteAddr)
	writeJSON(w, http.StatusOK, joinResponse{Sealed: sealed})
}

// liveGossipAddrs are the gossip addresses of the members alive now,
// this node first.
func (n *Node) liveGossipAddrs() []string {
	addrs := []string{n.gossipAdvertise()}
	for _, m := range n.gossip.Members() {
		if m.Status == gossip.StatusAlive && m.Name != n.cfg.Name {
			addrs = append(addrs, m.Addr)
		}
	}
	return addrs
}

// knownGossipAddrs are the addresses to join gossip through: those saved
// in the peers file, without this node.
func (n *Node) knownGossipAddrs() []string {
	var addrs []string
	b, err := os.ReadFile(filepath.Join(n.cfg.DataDir, filePeers))
	if err == nil {
		_ = json.Unmarshal(b, &addrs)
	}
	self := n.gossipAdvertise()
	out := addrs[:0]
	for _, a := range addrs {
		if a != self {
			out = append(out, a)
		}
	}
	return out
}

// savePeers remembers the alive members' gossip addresses for the next
// start, when they changed.
func (n *Node) savePeers() {
	var addrs []string
	for _, m := range n.gossip.Members() {
		if m.Name != n.cfg.Name && m.Status == gossip.StatusAlive {
			addrs = append(addrs, m.Addr)
		}
	}
	if len(addrs) == 0 {
		return
	}
	sort.Strings(addrs)
	key := strings.Join(addrs, " ")
	if key == n.savedPeers {
		return
	}
	if err := writeJSONFile(n.cfg.DataDir, filePeers, addrs); err == nil {
		n.savedPeers = key
	}
}

// peersFromState asks the members this node's replicated state knows for
// their gossip addresses: the way back in when the peers file is stale.
func (n *Node) peersFromState(ctx context.Context) []string {
	recs, err := n.raft.State().Nodes()
	if err != nil {
		return nil
	}
	var addrs []string
	for _, rec := range recs {
		if rec.Name == n.cfg.Name || rec.HTTP == "" {
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		req, _ := http.NewRequestWithContext(rctx, http.MethodGet, "http://"+rec.HTTP+"/api/v1/nodes", nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			var nodes []nodeJSON
			if json.NewDecoder(resp.Body).Decode(&nodes) == nil {
				for _, nd := range nodes {
					if nd.Name != n.cfg.Name && nd.Gossip != "" && nd.Status == "alive" {
						addrs = append(addrs, nd.Gossip)
					}
				}
			}
			resp.Body.Close()
		}
		cancel()
		if len(addrs) > 0 {
			return addrs
		}
	}
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

func apiError(w http.ResponseWriter, status int, format string, a ...any) {
	writeJSON(w, status, map[string]string{"error": fmt.Sprintf(format, a...)})
}
