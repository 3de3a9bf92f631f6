package cluster

import (
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
	"path/filepath"

	"github.com/drvmesh/drvmesh/store"
)

// Creds are a member's secrets and identity as loaded from its data dir:
// the mesh secrets, the mesh CA, the narinfo signing keys, and the
// mutual-TLS configurations, dialler and RPC client of the cluster port.
type Creds struct {
	Secrets   MeshSecrets
	CA        *CA
	Signer    store.SecretKey
	Guix      *store.GuixSecretKey // nil unless the mesh signs for Guix
	ServerTLS *tls.Config
	ClientTLS *tls.Config
	Dialer    *Dialer
	RPC       *http.Client
}

// BootstrapConfig says what a new mesh is made with.
type BootstrapConfig struct {
	DataDir string
	Name    string
	GuixKey bool // sign narinfos in the Guix style too
}

// Bootstrap creates a new mesh: its secrets, this node's identity and the
// tokens, written to the data dir. It returns the admin token.
func Bootstrap(cfg BootstrapConfig) (adminToken string, err error) {
	meshID := randomID()
	ca, err := NewCA(meshID)
	if err != nil {
		return "", err
	}
	sk, err := store.GenerateKey("drvmesh-" + meshID)
	if err != nil {
		return "", err
	}
	gk := make([]byte, 32)
	if _, err := rand.Read(gk); err != nil {
		return "", err
	}
	sec := MeshSecrets{
		MeshID: meshID, CACert: string(ca.CertPEM), CAKey: string(ca.KeyPEM()),
		GossipKey: gk, SigningKey: sk.String(), JoinToken: randomToken("dmj1.", 24),
	}
	if cfg.GuixKey {
		gk, err := store.GenerateGuixKey()
		if err != nil {
			return "", err
		}
		sec.GuixKey = string(gk.SecretKeyText())
	}
	key, err := newNodeKey()
	if err != nil {
		return "", err
	}
	cert, err := ca.Issue(cfg.Name, &key.PublicKey)
	if err != nil {
		return "", err
	}
	adminToken = randomToken("dma1.", 24)
	for _, f := range []struct {
		rel  string
		data []byte
	}{
		{fileNodeKey, keyPEM(key)},
		{fileNodeCert, cert},
		{fileJoinToken, []byte(sec.JoinToken + "\n")},
		{FileAdminToken, []byte(adminToken + "\n")},
	} {
		if err := writeSecretFile(cfg.DataDir, f.rel, f.data); err != nil {
			return "", fmt.Errorf("write %s: %w", f.rel, err)
		}
	}
	if err := WriteJSONFile(cfg.DataDir, fileSecrets, sec); err != nil {
		return "", err
	}
	// The identity is written last: a crash before it leaves no half node.
	if err := WriteJSONFile(cfg.DataDir, fileIdentity, identity{Name: cfg.Name}); err != nil {
		return "", err
	}
	return adminToken, nil
}

// NodeName is the node name the data dir was made for.
func NodeName(dir string) (string, error) {
	var id identity
	if err := readJSONFile(dir, fileIdentity, &id); err != nil {
		return "", err
	}
	return id.Name, nil
}

// Load reads the mesh secrets and node identity from the data dir.
func Load(dir string) (*Creds, error) {
	var c Creds
	if err := readJSONFile(dir, fileSecrets, &c.Secrets); err != nil {
		return nil, err
	}
	ca, err := parseCA([]byte(c.Secrets.CACert), []byte(c.Secrets.CAKey))
	if err != nil {
		return nil, err
	}
	c.CA = ca
	c.Signer, err = store.ParseSecretKey(c.Secrets.SigningKey)
	if err != nil {
		return nil, fmt.Errorf("%w: signing key: %v", ErrBadSecrets, err)
	}
	if c.Secrets.GuixKey != "" {
		gk, err := store.ParseGuixSecretKey([]byte(c.Secrets.GuixKey))
		if err != nil {
			return nil, fmt.Errorf("%w: guix key: %v", ErrBadSecrets, err)
		}
		c.Guix = &gk
	}
	certPEM, err := os.ReadFile(filepath.Join(dir, fileNodeCert))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadSecrets, err)
	}
	keyBytes, err := os.ReadFile(filepath.Join(dir, fileNodeKey))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadSecrets, err)
	}
	c.ServerTLS, c.ClientTLS, err = TLSConfigs(ca, certPEM, keyBytes)
	if err != nil {
		return nil, err
	}
	c.Dialer = &Dialer{conf: c.ClientTLS}
	c.RPC = c.Dialer.RPCClient()
	return &c, nil
}
