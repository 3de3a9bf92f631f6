package cluster

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/drvmesh/drvmesh/narcache"
)

// The join protocol runs over a member's public HTTP address, which may be
// plain HTTP. The token never crosses the wire: the joiner proves it with
// an HMAC over the whole request (a fresh nonce, the time, its name, its
// public key, its addresses and peer id), and the member seals its answer
// (the mesh secrets and the joiner's certificate) with a key derived from
// the token and the nonce. Someone who watches the exchange without the
// token learns nothing, cannot swap a field, and cannot replay it: the
// member refuses a nonce it has seen, or a request outside joinWindow.

// JoinRequest is what a new machine sends to POST /api/v1/join.
type JoinRequest struct {
	Name      string `json:"name"`
	Nonce     string `json:"nonce"`
	Time      int64  `json:"time"` // when it was proved, Unix seconds
	Proof     string `json:"proof"`
	PublicKey string `json:"public_key"`
	HTTP      string `json:"http"`
	Cluster   string `json:"cluster"`
	Gossip    string `json:"gossip"`
	P2P       string `json:"p2p"`
	PeerID    string `json:"peer_id"`
}

// joinResponse carries the sealed grant.
type joinResponse struct {
	Sealed []byte `json:"sealed"`
}

// joinGrant is what an admitted node receives.
type joinGrant struct {
	Secrets  MeshSecrets `json:"secrets"`
	NodeCert string      `json:"node_cert"`
	Gossip   []string    `json:"gossip"`
}

// Prove sets a fresh nonce and the time, and the proof of the join
// token over the whole request; change no field after it.
func (req *JoinRequest) Prove(token string) {
	nb := make([]byte, 16)
	_, _ = rand.Read(nb)
	req.Nonce = hex.EncodeToString(nb)
	req.Time = time.Now().Unix()
	req.Proof = joinProof(token, req)
}

// joinProof is the HMAC, keyed by the token, of a canonical encoding of
// every field of req but the proof: each field as its length (8 bytes,
// big-endian) and its bytes, in a fixed order.
func joinProof(token string, req *JoinRequest) string {
	m := hmac.New(sha256.New, []byte(strings.TrimSpace(token)))
	m.Write([]byte("drvmesh-join-v2\x00"))
	for _, f := range []string{
		req.Name, req.Nonce, strconv.FormatInt(req.Time, 10), req.PublicKey,
		req.HTTP, req.Cluster, req.Gossip, req.P2P, req.PeerID,
	} {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(f)))
		m.Write(n[:])
		m.Write([]byte(f))
	}
	return hex.EncodeToString(m.Sum(nil))
}

func checkJoinProof(token string, req *JoinRequest) bool {
	return hmac.Equal([]byte(joinProof(token, req)), []byte(req.Proof))
}

func sealKey(token, nonce string) []byte {
	sum := sha256.Sum256([]byte("drvmesh-join-seal\x00" + strings.TrimSpace(token) + "\x00" + nonce))
	return sum[:]
}

func seal(key, plain []byte) ([]byte, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, gcm.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return gcm.Seal(nonce, nonce, plain, nil), nil
}

func unseal(key, sealed []byte) ([]byte, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	if len(sealed) < gcm.NonceSize() {
		return nil, fmt.Errorf("%w: sealed grant too short", ErrBadToken)
	}
	plain, err := gcm.Open(nil, sealed[:gcm.NonceSize()], sealed[gcm.NonceSize():], nil)
	if err != nil {
		return nil, fmt.Errorf("%w: cannot open the grant", ErrBadToken)
	}
	return plain, nil
}

// JoinConfig is what a new machine joins with.
type JoinConfig struct {
	DataDir string
	Name    string
	// Addrs are members' HTTP addresses (host:port or URLs).
	Addrs []string
	Token string
	// This node's advertised addresses.
	HTTP, Cluster, Gossip string
	Log                   *slog.Logger
}

// Join asks a member to admit this node and writes what it grants (the
// mesh secrets, the node certificate, the members' gossip addresses) to
// the data dir; Load then reads it.
func Join(ctx context.Context, cfg JoinConfig) error {
	if cfg.Token == "" {
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
	id, err := narcache.LoadOrCreateIdentity(filepath.Join(cfg.DataDir, FileP2PKey))
	if err != nil {
		return err
	}
	pid, err := peerIDOf(id)
	if err != nil {
		return err
	}
	req := JoinRequest{
		Name: cfg.Name, PublicKey: string(pub),
		HTTP: cfg.HTTP, Cluster: cfg.Cluster, Gossip: cfg.Gossip,
		PeerID: pid,
	}
	grant, err := askMembers(ctx, cfg, req)
	if err != nil {
		return err
	}
	for _, f := range []struct {
		rel  string
		data []byte
	}{
		{fileNodeKey, keyPEM(key)},
		{fileNodeCert, []byte(grant.NodeCert)},
		{fileJoinToken, []byte(grant.Secrets.JoinToken + "\n")},
	} {
		if err := writeSecretFile(cfg.DataDir, f.rel, f.data); err != nil {
			return err
		}
	}
	if err := WriteJSONFile(cfg.DataDir, filePeers, grant.Gossip); err != nil {
		return err
	}
	if err := WriteJSONFile(cfg.DataDir, fileSecrets, grant.Secrets); err != nil {
		return err
	}
	if err := WriteJSONFile(cfg.DataDir, fileIdentity, identity{Name: cfg.Name}); err != nil {
		return err
	}
	cfg.Log.Info("admitted to the mesh", "mesh", grant.Secrets.MeshID, "via", cfg.Addrs)
	return nil
}

// askMembers asks the members at cfg.Addrs to admit this node. Members
// may be electing a leader (503) or restarting: it tries each address in
// turn for up to a minute. A refused token is final.
func askMembers(ctx context.Context, cfg JoinConfig, req JoinRequest) (*joinGrant, error) {
	var grant *joinGrant
	var errs []error
	deadline := time.Now().Add(time.Minute)
	for grant == nil && time.Now().Before(deadline) {
		errs = errs[:0]
		for _, addr := range cfg.Addrs {
			jctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			var err error
			grant, err = requestJoin(jctx, addr, cfg.Token, req)
			cancel()
			if err == nil {
				break
			}
			if errors.Is(err, ErrBadToken) || errors.Is(err, errJoinRefused) {
				return nil, err
			}
			errs = append(errs, err)
		}
		if grant == nil {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(time.Second):
			}
		}
	}
	if grant == nil {
		return nil, fmt.Errorf("no member admitted this node (is --join right and the mesh up?): %w", errors.Join(errs...))
	}
	return grant, nil
}

// requestJoin asks the member at addr (host:port or URL) to admit this
// node, and returns the grant.
func requestJoin(ctx context.Context, addr, token string, req JoinRequest) (*joinGrant, error) {
	req.Prove(token)
	body, _ := json.Marshal(req)
	url := strings.TrimSuffix(baseURL(addr), "/") + "/api/v1/join"
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	hreq.Header.Set("Content-Type", "application/json")
	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Do(hreq)
	if err != nil {
		return nil, fmt.Errorf("contact %s: %w", addr, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		msg := apiErrorText(data)
		switch resp.StatusCode {
		case http.StatusUnauthorized:
			return nil, fmt.Errorf("%w: %s refused the join: %s", ErrBadToken, addr, msg)
		case http.StatusBadRequest, http.StatusConflict:
			return nil, fmt.Errorf("%w: %s: %s", errJoinRefused, addr, msg)
		}
		return nil, fmt.Errorf("%s refused the join (%s): %s", addr, resp.Status, msg)
	}
	var jr joinResponse
	if err := json.Unmarshal(data, &jr); err != nil {
		return nil, fmt.Errorf("join answer from %s: %w", addr, err)
	}
	plain, err := unseal(sealKey(token, req.Nonce), jr.Sealed)
	if err != nil {
		return nil, err
	}
	var g joinGrant
	if err := json.Unmarshal(plain, &g); err != nil {
		return nil, fmt.Errorf("join grant: %w", err)
	}
	return &g, nil
}

// baseURL turns "host:port" into "http://host:port"; URLs pass through.
func baseURL(addr string) string {
	if strings.Contains(addr, "://") {
		return addr
	}
	return "http://" + addr
}

func peerIDOf(k crypto.PrivKey) (string, error) {
	id, err := peer.IDFromPrivateKey(k)
	if err != nil {
		return "", err
	}
	return id.String(), nil
}
