package node

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// The join protocol runs over a member's public HTTP address, which may be
// plain HTTP. The token never crosses the wire: the joiner proves it with
// an HMAC over a fresh nonce, and the member seals its answer (the mesh
// secrets and the joiner's certificate) with a key derived from the token
// and the nonce. Someone who watches the exchange without the token learns
// nothing and can replay nothing.

// errJoinRefused: a member refused the request for good (bad name, name
// taken); asking again will not help.
var errJoinRefused = errors.New("join refused")

// joinRequest is what a new machine sends to POST /api/v1/join.
type joinRequest struct {
	Name      string `json:"name"`
	Nonce     string `json:"nonce"`
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
	Secrets  meshSecrets `json:"secrets"`
	NodeCert string      `json:"node_cert"`
	Gossip   []string    `json:"gossip"`
}

func joinProof(token, name, nonce string) string {
	m := hmac.New(sha256.New, []byte(strings.TrimSpace(token)))
	m.Write([]byte("drvmesh-join\x00" + name + "\x00" + nonce))
	return hex.EncodeToString(m.Sum(nil))
}

func checkJoinProof(token string, req *joinRequest) bool {
	want := joinProof(token, req.Name, req.Nonce)
	return hmac.Equal([]byte(want), []byte(req.Proof))
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

// requestJoin asks the member at addr (host:port or URL) to admit this
// node, and returns the grant.
func requestJoin(ctx context.Context, addr, token string, req joinRequest) (*joinGrant, error) {
	nb := make([]byte, 16)
	_, _ = rand.Read(nb)
	req.Nonce = hex.EncodeToString(nb)
	req.Proof = joinProof(token, req.Name, req.Nonce)
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

// apiErrorText extracts {"error": "..."} or returns the body trimmed.
func apiErrorText(b []byte) string {
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(b, &e) == nil && e.Error != "" {
		return e.Error
	}
	s := strings.TrimSpace(string(b))
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}
