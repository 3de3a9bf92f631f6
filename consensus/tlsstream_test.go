package consensus

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/drvmesh/drvmesh/internal/testutil"
)

type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test mesh ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// configs returns the server and client TLS configs of a node whose
// certificate this CA signed and which trusts trust.
func (ca *testCA) configs(t *testing.T, name string, trust *x509.CertPool) (*tls.Config, *tls.Config) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	cert := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	server := &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: trust, ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS13}
	client := &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: trust, MinVersion: tls.VersionTLS13}
	return server, client
}

func tlsNode(t *testing.T, id string, bootstrap bool, server, client *tls.Config) *Raft {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, id, filepath.Join(t.TempDir(), "data"), ln.Addr().String(), bootstrap)
	cfg.Layer = NewTLSStreamLayer(ln, nil, server, client)
	return startNode(t, cfg)
}

func TestTLSStreamLayer(t *testing.T) {
	ca, other := newTestCA(t), newTestCA(t)
	s1, c1 := ca.configs(t, "n1", ca.pool)
	s2, c2 := ca.configs(t, "n2", ca.pool)
	n1 := tlsNode(t, "n1", true, s1, c1)
	testutil.Eventually(t, waitFor, "n1 leads", n1.IsLeader)

	t.Run("members of one CA replicate", func(t *testing.T) {
		n2 := tlsNode(t, "n2", false, s2, c2)
		joinNode(t, n1, n2)
		ids := submitN(t, []*Raft{n1}, 3, "tls")
		testutil.Eventually(t, waitFor, "n2 has the builds", func() bool { return hasBuilds(n2, ids) })
	})
	t.Run("a certificate from another CA is refused", func(t *testing.T) {
		// Trusts our CA but presents a certificate of another one.
		_, evil := other.configs(t, "evil", ca.pool)
		conn, err := tls.Dial("tcp", n1.Addr(), evil)
		if err == nil {
			conn.SetDeadline(time.Now().Add(5 * time.Second))
			conn.Write([]byte{0})
			_, err = conn.Read(make([]byte, 1))
			conn.Close()
		}
		var ne net.Error
		if err == nil || (errors.As(err, &ne) && ne.Timeout()) {
			t.Fatalf("raft layer accepted a peer with a foreign certificate (err = %v)", err)
		}
	})
	t.Run("a server from another CA is not trusted", func(t *testing.T) {
		_, evilClient := other.configs(t, "evil", other.pool)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		layer := NewTLSStreamLayer(ln, nil, s1, evilClient)
		defer layer.Close()
		if c, err := layer.Dial(raftAddr(n1.Addr()), time.Second); err == nil {
			c.Close()
			t.Fatal("dialed a server whose certificate does not verify")
		}
	})
}
