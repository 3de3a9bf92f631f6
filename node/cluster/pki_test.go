package cluster

import (
	"context"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"
)

// testNodeTLS makes a CA-signed identity for name.
func testIdentity(t *testing.T, ca *CA, name string) (certPEM, keyPEMBytes []byte) {
	t.Helper()
	k, err := newNodeKey()
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Issue(name, &k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return cert, keyPEM(k)
}

func TestMux_MutualTLS(t *testing.T) {
	ca, err := NewCA("test")
	if err != nil {
		t.Fatal(err)
	}
	other, err := NewCA("other")
	if err != nil {
		t.Fatal(err)
	}
	srvCert, srvKey := testIdentity(t, ca, "server")
	srvConf, _, err := TLSConfigs(ca, srvCert, srvKey)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := NewMux(ln, srvConf, slog.New(slog.DiscardHandler))
	m.GateRaft(func(c *x509.Certificate) error {
		if c.Subject.CommonName != "member" {
			return ErrNotVoter
		}
		return nil
	})
	go m.Serve()
	defer m.Close()
	go func() {
		for {
			c, err := m.subs[muxRaft].Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(c, c); c.Close() }()
		}
	}()

	dial := func(c *CA, name string) error {
		cert, key := testIdentity(t, c, name)
		_, cliConf, err := TLSConfigs(ca, cert, key)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		conn, err := (&Dialer{conf: cliConf}).dial(ctx, ln.Addr().String(), muxRaft)
		if err != nil {
			return err
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := conn.Write([]byte("ping")); err != nil {
			return err
		}
		buf := make([]byte, 4)
		_, err = io.ReadFull(conn, buf)
		return err
	}
	t.Run("member", func(t *testing.T) {
		if err := dial(ca, "member"); err != nil {
			t.Fatalf("member refused: %v", err)
		}
	})
	t.Run("other CA", func(t *testing.T) {
		if err := dial(other, "intruder"); err == nil {
			t.Fatal("a certificate from another CA was accepted")
		}
	})
	t.Run("member the raft gate refuses", func(t *testing.T) {
		if err := dial(ca, "nonvoter"); err == nil {
			t.Fatal("a raft stream the gate refused was accepted")
		}
	})
}

func TestJoin_SealAndProof(t *testing.T) {
	req := &JoinRequest{
		Name: "n2", PublicKey: "key", HTTP: "h:1", Cluster: "c:2", Gossip: "g:3", P2P: "/ip4/p", PeerID: "peer",
	}
	req.Prove("tok")
	if !checkJoinProof("tok", req) {
		t.Fatal("right token refused")
	}
	if checkJoinProof("wrong", req) {
		t.Fatal("wrong token accepted")
	}
	swaps := map[string]func(r *JoinRequest){
		"name":       func(r *JoinRequest) { r.Name = "n3" },
		"nonce":      func(r *JoinRequest) { r.Nonce += "0" },
		"time":       func(r *JoinRequest) { r.Time++ },
		"public key": func(r *JoinRequest) { r.PublicKey = "other" },
		"http":       func(r *JoinRequest) { r.HTTP = "127.0.0.1:19999" },
		"cluster":    func(r *JoinRequest) { r.Cluster = "x:2" },
		"gossip":     func(r *JoinRequest) { r.Gossip = "x:3" },
		"p2p":        func(r *JoinRequest) { r.P2P = "/ip4/x" },
		"peer id":    func(r *JoinRequest) { r.PeerID = "other" },
		// Moving bytes between fields keeps their concatenation.
		"boundary": func(r *JoinRequest) { r.HTTP, r.Cluster = r.HTTP+"c", r.Cluster[1:] },
	}
	for name, swap := range swaps {
		r := *req
		swap(&r)
		if checkJoinProof("tok", &r) {
			t.Errorf("proof still holds after the %s changed", name)
		}
	}
	sealed, err := seal(sealKey("tok", req.Nonce), []byte("secret"))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := unseal(sealKey("tok", req.Nonce), sealed); err != nil || string(got) != "secret" {
		t.Fatalf("unseal = %q, %v", got, err)
	}
	if _, err := unseal(sealKey("wrong", req.Nonce), sealed); err == nil {
		t.Fatal("unsealed with the wrong token")
	}
}

func TestIsHostPort(t *testing.T) {
	for addr, ok := range map[string]bool{
		"127.0.0.1:7000":          true,
		"[::1]:7000":              true,
		"node-1.example.org:7000": true,
		"127.0.0.1:19999/secret?": false,
		"user@127.0.0.1:7000":     false,
		"http://127.0.0.1:7000":   false,
		"127.0.0.1":               false,
		":7000":                   false,
		"127.0.0.1:0":             false,
		"127.0.0.1:99999":         false,
		"":                        false,
	} {
		if got := isHostPort(addr); got != ok {
			t.Errorf("isHostPort(%q) = %v, want %v", addr, got, ok)
		}
	}
}
