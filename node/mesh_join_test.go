package node

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/drvmesh/drvmesh/node/cluster"
)

// joinRequest is a join request for name with a fresh key, not proved.
func joinRequest(t *testing.T, name string) cluster.JoinRequest {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pub := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	return cluster.JoinRequest{
		Name: name, PublicKey: string(pub), PeerID: "12D3KooWJoinTestPeer",
		HTTP: "127.0.0.1:1", Cluster: "127.0.0.1:2", Gossip: "127.0.0.1:3",
	}
}

// sendJoin posts req as it is to via's join endpoint.
func sendJoin(t *testing.T, via *Node, req cluster.JoinRequest) (int, []byte) {
	t.Helper()
	body, _ := json.Marshal(req)
	return httpDo(t, http.MethodPost, apiURL(via, "/api/v1/join"), "", bytes.NewReader(body))
}

// lines is a log sink that counts what it was sent.
type lines struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (l *lines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// count is the number of lines holding every one of words.
func (l *lines) count(words ...string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, line := range strings.Split(l.buf.String(), "\n") {
		all := line != ""
		for _, w := range words {
			all = all && strings.Contains(line, w)
		}
		if all {
			n++
		}
	}
	return n
}

// TestJoinServer_Hardening checks the join server against requests
// altered or replayed by someone who watched a joiner's request, and
// against guessing the token from one address.
func TestJoinServer_Hardening(t *testing.T) {
	logs := &lines{}
	m := newTestMesh(t)
	n1 := m.bootstrap("n1", func(c *Config) {
		steady(c)
		c.Logger = slog.New(slog.NewTextHandler(io.MultiWriter(tWriter{m.t, m.logsDone}, logs), &slog.HandlerOptions{Level: slog.LevelWarn}))
	})
	token := n1.JoinToken()

	t.Run("a replayed request is refused", func(t *testing.T) {
		req := joinRequest(t, "once")
		req.Prove(token)
		if code, body := sendJoin(t, n1, req); code != http.StatusOK {
			t.Fatalf("first join = %d %s", code, body)
		}
		before, err := n1.raft.State().Node("once")
		if err != nil {
			t.Fatal(err)
		}
		code, body := sendJoin(t, n1, req)
		if code != http.StatusUnauthorized || !strings.Contains(string(body), "used before") {
			t.Errorf("replayed request = %d %s, want 401 used before", code, body)
		}
		if after, err := n1.raft.State().Node("once"); err != nil || after.CertFingerprint != before.CertFingerprint {
			t.Errorf("the replay changed the record: %+v → %+v (%v)", before, after, err)
		}
	})
	t.Run("fields swapped after the proof are refused", func(t *testing.T) {
		swaps := map[string]func(r *cluster.JoinRequest){
			"public key": func(r *cluster.JoinRequest) { r.PublicKey = joinRequest(t, "x").PublicKey },
			"peer id":    func(r *cluster.JoinRequest) { r.PeerID = "12D3KooWSomeoneElse" },
			"address":    func(r *cluster.JoinRequest) { r.HTTP = "127.0.0.1:19999" },
		}
		for what, swap := range swaps {
			req := joinRequest(t, "swapped")
			req.Prove(token)
			swap(&req)
			if code, body := sendJoin(t, n1, req); code != http.StatusUnauthorized {
				t.Errorf("join with the %s swapped = %d %s, want 401", what, code, body)
			}
		}
		if _, err := n1.raft.State().Node("swapped"); err == nil {
			t.Error("a swapped request was admitted")
		}
	})
	t.Run("an address that is not host:port is refused", func(t *testing.T) {
		req := joinRequest(t, "urlish")
		req.HTTP = "127.0.0.1:19999/secret?"
		req.Prove(token)
		if code, body := sendJoin(t, n1, req); code != http.StatusBadRequest {
			t.Errorf("join with HTTP %q = %d %s, want 400", req.HTTP, code, body)
		}
	})
	t.Run("guessing from one address is rate-limited", func(t *testing.T) {
		linesBefore := logs.count("join")
		codes := map[int]int{}
		for i := 0; i < 100; i++ {
			req := joinRequest(t, "guess")
			req.Prove("dmj1.guess-" + string(rune('a'+i%26)))
			code, _ := sendJoin(t, n1, req)
			codes[code]++
		}
		if codes[http.StatusTooManyRequests] < 80 || codes[http.StatusTooManyRequests]+codes[http.StatusUnauthorized] != 100 {
			t.Errorf("100 wrong tokens from one address answered %v, want 429 after the burst", codes)
		}
		if n := logs.count("join") - linesBefore; n < 1 || n > 2 {
			t.Errorf("%d join log lines for 100 attempts, want 1 or 2:\n%s", n, logs.buf.String())
		}
		if n := logs.count("join", "rate-limited"); n != 1 {
			t.Errorf("%d rate-limit lines, want 1", n)
		}
	})
}
