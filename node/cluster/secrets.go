package cluster

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Data dir layout. Secrets are 0600, their folders 0700.
const (
	fileSecrets   = "mesh/secrets.json"
	fileNodeKey   = "node/node.key"
	fileNodeCert  = "node/node.crt"
	fileIdentity  = "node/identity.json"
	fileJoinToken = "join-token"
	// FileAdminToken holds the admin token on the node that made the mesh.
	FileAdminToken = "admin-token"
	// FileP2PKey holds the node's libp2p identity.
	FileP2PKey = "node/p2p.key"
)

// MeshSecrets are what every member holds: the CA that admits nodes, the
// gossip encryption key, the narinfo signing keys and the join token.
type MeshSecrets struct {
	MeshID     string `json:"mesh_id"`
	CACert     string `json:"ca_cert"`
	CAKey      string `json:"ca_key"`
	GossipKey  []byte `json:"gossip_key"`
	SigningKey string `json:"signing_key"`
	GuixKey    string `json:"guix_key,omitempty"`
	JoinToken  string `json:"join_token"`
}

// identity is this node's own record, written once at first start.
type identity struct {
	Name string `json:"name"`
}

func randomToken(prefix string, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return prefix + base64.RawURLEncoding.EncodeToString(b)
}

func randomID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// TokenHash is how tokens are kept in the replicated state: never the
// token itself.
func TokenHash(tok string) string {
	sum := sha256.Sum256([]byte(strings.TrimSpace(tok)))
	return hex.EncodeToString(sum[:])
}

func writeSecretFile(dir, rel string, data []byte) error {
	p := filepath.Join(dir, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return err
	}
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	f, err := os.Open(tmp)
	if err == nil {
		_ = f.Sync()
		f.Close()
	}
	return os.Rename(tmp, p)
}

func readJSONFile(dir, rel string, v any) error {
	b, err := os.ReadFile(filepath.Join(dir, rel))
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrBadSecrets, rel, err)
	}
	return nil
}

// WriteJSONFile writes v as indented JSON to the secret file dir/rel.
func WriteJSONFile(dir, rel string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return writeSecretFile(dir, rel, append(b, '\n'))
}

// HasState reports whether dir already holds a node (mesh secrets and a
// node identity), so a restart resumes instead of bootstrapping.
func HasState(dir string) (bool, error) {
	_, err1 := os.Stat(filepath.Join(dir, fileSecrets))
	_, err2 := os.Stat(filepath.Join(dir, fileIdentity))
	switch {
	case err1 == nil && err2 == nil:
		return true, nil
	case errors.Is(err1, os.ErrNotExist) && errors.Is(err2, os.ErrNotExist):
		return false, nil
	case err1 == nil || err2 == nil:
		return false, fmt.Errorf("%w: %s holds half a node (mesh/secrets.json or node/identity.json is missing); remove the dir to start afresh", ErrBadSecrets, dir)
	default:
		return false, err1
	}
}
