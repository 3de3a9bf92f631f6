package node

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/drvmesh/drvmesh/consensus"
	"github.com/drvmesh/drvmesh/gossip"
	"github.com/drvmesh/drvmesh/internal/testutil"
	"github.com/drvmesh/drvmesh/node/cluster"
	"github.com/drvmesh/drvmesh/store"
)

// postJoin sends a join request for name, proved with token, to via and
// returns the HTTP status and body.
func postJoin(t *testing.T, via *Node, token, name string) (int, []byte) {
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
	req := cluster.JoinRequest{
		Name: name, PublicKey: string(pub),
		HTTP: "127.0.0.1:1", Cluster: "127.0.0.1:2", Gossip: "127.0.0.1:3",
	}
	req.Prove(token)
	body, _ := json.Marshal(req)
	return httpDo(t, http.MethodPost, apiURL(via, "/api/v1/join"), "", bytes.NewReader(body))
}

// startJoiner runs a joining node to the point where it is refused or
// admitted; an admitted node is stopped at the end of the test.
func startJoiner(t *testing.T, m *testMesh, name, via, token string) error {
	t.Helper()
	cfg := m.config(name, nil)
	cfg.Join, cfg.JoinToken = []string{via}, token
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = n.Start(ctx)
	if err == nil {
		t.Cleanup(n.Kill)
	}
	return err
}

// meshSourceNar makes the NAR of a one-file source and its content-addressed
// store path.
func meshSourceNar(t *testing.T, content string) (path string, nar []byte, query url.Values) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "src")
	if err := os.WriteFile(f, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := store.DumpPath(&buf, f); err != nil {
		t.Fatal(err)
	}
	h, size, err := store.CheckNar(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	path = store.MakeSourcePath("/nix/store", "mesh-test-src", h, nil, false)
	q := url.Values{"path": {path}, "nar_hash": {h.String()}, "nar_size": {strconv.FormatInt(size, 10)}}
	return path, buf.Bytes(), q
}

func hasNarInfo(n *Node, path string) bool {
	hp, err := consensus.HashPart(path)
	if err != nil {
		return false
	}
	ni, err := n.raft.State().NarInfoByHash(hp)
	return err == nil && ni != nil
}

// TestMesh_Security checks that only holders of the mesh's secrets get
// in: join tokens, node names, the admin token, the cluster CA and the
// gossip key.
func TestMesh_Security(t *testing.T) {
	m := newTestMesh(t)
	n1 := m.bootstrap("n1", steady)
	n2 := m.join("n2", steady)
	testutil.Eventually(t, 20*time.Second, "2 voters", func() bool {
		return len(n1.api.Status().Voters) == 2
	})
	admin := m.adminToken("n1")
	nodeCount := func(n *Node) int {
		recs, err := n.raft.State().Nodes()
		if err != nil {
			t.Fatal(err)
		}
		return len(recs)
	}

	t.Run("wrong join token", func(t *testing.T) {
		for _, via := range []*Node{n1, n2} {
			code, body := postJoin(t, via, "dmj1.not-the-token", "intruder")
			if code != http.StatusUnauthorized {
				t.Errorf("join via %s with a wrong token = %d %s, want 401", via.Name(), code, body)
			}
		}
		err := startJoiner(t, m, "intruder", n1.HTTPAddr(), "dmj1.not-the-token")
		if !errors.Is(err, ErrBadToken) {
			t.Errorf("joining with a wrong token: %v, want ErrBadToken", err)
		}
		if ok, _ := cluster.HasState(filepath.Join(m.base, "intruder")); ok {
			t.Error("a refused joiner kept a node identity")
		}
		for _, n := range []*Node{n1, n2} {
			if _, err := n.raft.State().Node("intruder"); !errors.Is(err, consensus.ErrNotFound) {
				t.Errorf("%s has a record of the refused node: %v", n.Name(), err)
			}
			if c := nodeCount(n); c != 2 {
				t.Errorf("%s has %d node records, want 2", n.Name(), c)
			}
		}
	})

	t.Run("name taken", func(t *testing.T) {
		before, err := n1.raft.State().Node("n2")
		if err != nil {
			t.Fatal(err)
		}
		code, body := postJoin(t, n1, n1.JoinToken(), "n2")
		if code != http.StatusConflict {
			t.Fatalf("join as an existing name = %d %s, want 409", code, body)
		}
		after, err := n1.raft.State().Node("n2")
		if err != nil || after.CertFingerprint != before.CertFingerprint || after.HTTP != before.HTTP {
			t.Errorf("record of n2 changed: %+v → %+v (%v)", before, after, err)
		}
	})

	t.Run("expired join token", func(t *testing.T) {
		em := newTestMesh(t)
		e1 := em.bootstrap("e1", func(c *Config) { c.JoinTokenTTL = time.Millisecond; steady(c) })
		testutil.Eventually(t, 10*time.Second, "token expiry recorded", func() bool {
			st, err := e1.raft.State().Settings()
			return err == nil && !st.JoinTokenExpires.IsZero() && time.Now().After(st.JoinTokenExpires)
		})
		code, body := postJoin(t, e1, e1.JoinToken(), "late")
		if code != http.StatusUnauthorized || !strings.Contains(string(body), "expired") {
			t.Errorf("join with an expired token = %d %s, want 401 expired", code, body)
		}
		if err := startJoiner(t, em, "late", e1.HTTPAddr(), e1.JoinToken()); !errors.Is(err, ErrBadToken) {
			t.Errorf("joining with an expired token: %v, want ErrBadToken", err)
		}
		if c := nodeCount(e1); c != 1 {
			t.Errorf("%d node records after refused joins, want 1", c)
		}
	})

	t.Run("wrong admin token", func(t *testing.T) {
		id := submitSure(t, n1, 1)
		testutil.Eventually(t, 10*time.Second, "the build reaches n2", func() bool { return hasBuild(n2, id) })
		path, nar, q := meshSourceNar(t, "admin token test\n")
		buildsBefore, err := n1.raft.State().ListBuilds(consensus.BuildFilter{})
		if err != nil {
			t.Fatal(err)
		}
		for _, tok := range []string{"", "dma1.wrong", admin + "x"} {
			for _, via := range []*Node{n1, n2} {
				reqs := []struct {
					method, path string
					body         []byte
				}{
					{http.MethodPost, "/api/v1/builds", []byte(`{"derivations":["` + fakeDrv(2) + `"]}`)},
					{http.MethodPost, "/api/v1/cancel", []byte(`{"ids":["` + id + `"]}`)},
					{http.MethodPut, "/api/v1/nars?" + q.Encode(), nar},
				}
				for _, r := range reqs {
					code, body := httpDo(t, r.method, apiURL(via, r.path), tok, bytes.NewReader(r.body))
					if code != http.StatusUnauthorized {
						t.Errorf("%s %s via %s with token %q = %d %s, want 401", r.method, r.path, via.Name(), tok, code, body)
					}
				}
			}
		}
		for _, n := range []*Node{n1, n2} {
			if b, err := n.raft.State().GetBuild(id); err != nil || b.State != consensus.StateQueued {
				t.Errorf("%s: build %s after refused cancels: %+v, %v", n.Name(), id, b, err)
			}
			if hasNarInfo(n, path) {
				t.Errorf("%s records the refused upload %s", n.Name(), path)
			}
			bs, err := n.raft.State().ListBuilds(consensus.BuildFilter{})
			if err != nil || len(bs) != len(buildsBefore) {
				t.Errorf("%s: %d builds after refused submissions, want %d (%v)", n.Name(), len(bs), len(buildsBefore), err)
			}
		}
		// The same requests with the admin token do change the mesh (sent
		// again while a leader change leaves the outcome open).
		testutil.Eventually(t, 20*time.Second, "upload with the admin token", func() bool {
			if !hasNarInfo(n2, path) {
				code, body := httpDo(t, http.MethodPut, apiURL(n2, "/api/v1/nars?"+q.Encode()), admin, bytes.NewReader(nar))
				t.Logf("upload with the admin token: %d %s", code, body)
			}
			return hasNarInfo(n2, path)
		})
		testutil.Eventually(t, 20*time.Second, "cancel with the admin token", func() bool {
			if b, err := n2.raft.State().GetBuild(id); err == nil && b.State == consensus.StateCanceled {
				return true
			}
			code, body := httpDo(t, http.MethodPost, apiURL(n2, "/api/v1/cancel"), admin, strings.NewReader(`{"ids":["`+id+`"]}`))
			t.Logf("cancel with the admin token: %d %s", code, body)
			return false
		})
		if !hasNarInfo(n2, path) {
			t.Error("accepted upload not recorded")
		}
		if b, err := n2.raft.State().GetBuild(id); err != nil || b.State != consensus.StateCanceled {
			t.Errorf("accepted cancel: %+v, %v", b, err)
		}
	})

	t.Run("foreign certificate on the cluster port", func(t *testing.T) {
		other, err := cluster.NewCA("other-mesh")
		if err != nil {
			t.Fatal(err)
		}
		cert, key, err := other.NewIdentity("n3")
		if err != nil {
			t.Fatal(err)
		}
		_, foreign, err := cluster.TLSConfigs(other, cert, key)
		if err != nil {
			t.Fatal(err)
		}
		// An intruder that trusts any server, so that only n1's check of
		// the client certificate stands in the way.
		reckless := foreign.Clone()
		reckless.VerifyPeerCertificate = nil
		index := func(d *cluster.Dialer) error {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+n1.clusterAdvertise()+"/rpc/index", nil)
			c := d.RPCClient()
			defer c.CloseIdleConnections()
			resp, err := c.Do(req)
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return errors.New(resp.Status)
			}
			return nil
		}
		if err := index(n2.creds.Dialer); err != nil {
			t.Fatalf("a member cannot call the cluster port: %v", err)
		}
		for name, conf := range map[string]*tls.Config{"other CA": foreign, "trusting intruder": reckless} {
			if err := index(cluster.NewDialer(conf)); err == nil {
				t.Errorf("%s: RPC over the cluster port succeeded", name)
			}
		}
		// Raft: the connection is refused before any raft message is read.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := cluster.NewDialer(reckless).DialRaft(ctx, n1.clusterAdvertise())
		if err == nil {
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, err = c.Read(make([]byte, 1))
			c.Close()
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Error("raft connection from a foreign certificate stayed open")
			}
		}
		if err == nil {
			t.Error("raft connection from a foreign certificate accepted")
		}
	})

	t.Run("foreign gossip key", func(t *testing.T) {
		join := func(name string, key []byte) (*gossip.Gossip, error) {
			cfg := gossip.TestConfig()
			cfg.Name, cfg.BindAddr, cfg.BindPort, cfg.SecretKey = name, "127.0.0.1", 0, key
			cfg.Logger = m.config(name, nil).Logger
			g, err := gossip.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if err := g.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = g.Close() })
			_, err = g.Join([]string{n1.gossipAdvertise()})
			return g, err
		}
		wrong := make([]byte, 32)
		_, _ = rand.Read(wrong)
		g, err := join("intruder", wrong)
		if err == nil {
			t.Error("gossip join with another key succeeded")
		}
		if g.NumMembers() != 1 {
			t.Errorf("intruder sees %d members", g.NumMembers())
		}
		// A member with the key is let in, so the address was right.
		if _, err := join("probe", n1.creds.Secrets.GossipKey); err != nil {
			t.Fatalf("gossip join with the mesh key: %v", err)
		}
		testutil.Eventually(t, 10*time.Second, "probe member seen", func() bool {
			_, ok := n2.gossip.Member("probe")
			return ok
		})
		for _, n := range []*Node{n1, n2} {
			if _, ok := n.gossip.Member("intruder"); ok {
				t.Errorf("%s lists the intruder as a gossip member", n.Name())
			}
		}
	})
}
