package cluster

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"time"
)

// The mesh's node identity: one CA per mesh, made at bootstrap; every
// admitted node gets a certificate whose common name is its node name.
// Raft and node-to-node RPC run over mutual TLS with these certificates, so
// a process that was never admitted can neither read nor inject.

// certLifetime is long: volunteer machines come and go for years, and
// revocation is by removal from the mesh, not by expiry.
const certLifetime = 20 * 365 * 24 * time.Hour

// CA is the mesh certificate authority.
type CA struct {
	Cert    *x509.Certificate
	CertPEM []byte
	Key     *ecdsa.PrivateKey
}

// NewCA makes a fresh mesh CA.
func NewCA(meshID string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate ca key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          randSerial(),
		Subject:               pkix.Name{CommonName: "drvmesh CA " + meshID},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(certLifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("create ca certificate: %w", err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &CA{Cert: cert, CertPEM: pemBlock("CERTIFICATE", der), Key: key}, nil
}

// parseCA reads a CA from its PEM certificate and PKCS#8 key.
func parseCA(certPEM, keyPEM []byte) (*CA, error) {
	cert, err := parseCertPEM(certPEM)
	if err != nil {
		return nil, err
	}
	key, err := parseKeyPEM(keyPEM)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, CertPEM: certPEM, Key: key}, nil
}

// KeyPEM is the CA key as PEM.
func (ca *CA) KeyPEM() []byte { return keyPEM(ca.Key) }

// Issue signs a node certificate for pub with the node name as common name,
// usable as both TLS server and client.
func (ca *CA) Issue(name string, pub crypto.PublicKey) ([]byte, error) {
	tmpl := &x509.Certificate{
		SerialNumber: randSerial(),
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(certLifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("issue certificate for %s: %w", name, err)
	}
	return pemBlock("CERTIFICATE", der), nil
}

// TLSConfigs builds the mutual-TLS server and client configurations for a
// node: both sides present their node certificate and accept only peers
// whose certificate the mesh CA signed.
func TLSConfigs(ca *CA, certPEM, keyPEMBytes []byte) (server, client *tls.Config, err error) {
	pair, err := tls.X509KeyPair(certPEM, keyPEMBytes)
	if err != nil {
		return nil, nil, fmt.Errorf("load node certificate: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	server = &tls.Config{
		Certificates: []tls.Certificate{pair},
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS13,
	}
	client = &tls.Config{
		Certificates: []tls.Certificate{pair},
		RootCAs:      pool,
		MinVersion:   tls.VersionTLS13,
		// Peers are dialled by address, not name; verify the chain against
		// the mesh CA and accept any admitted node name.
		InsecureSkipVerify: true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			return verifyChain(pool, raw)
		},
	}
	return server, client, nil
}

func verifyChain(pool *x509.CertPool, raw [][]byte) error {
	if len(raw) == 0 {
		return fmt.Errorf("%w: peer sent no certificate", ErrNotMember)
	}
	cert, err := x509.ParseCertificate(raw[0])
	if err != nil {
		return fmt.Errorf("%w: %v", ErrNotMember, err)
	}
	_, err = cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	if err != nil {
		return fmt.Errorf("%w: %v", ErrNotMember, err)
	}
	return nil
}

// NewIdentity makes a node key and its certificate for name, both PEM.
func (ca *CA) NewIdentity(name string) (certPEM, keyPEMBytes []byte, err error) {
	k, err := newNodeKey()
	if err != nil {
		return nil, nil, err
	}
	cert, err := ca.Issue(name, &k.PublicKey)
	if err != nil {
		return nil, nil, err
	}
	return cert, keyPEM(k), nil
}

// newNodeKey makes a node's private key.
func newNodeKey() (*ecdsa.PrivateKey, error) {
	return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
}

// certFingerprint is the hex SHA-256 of a certificate's DER bytes.
func certFingerprint(certPEM []byte) string {
	b, _ := pem.Decode(certPEM)
	if b == nil {
		return ""
	}
	sum := sha256.Sum256(b.Bytes)
	return hex.EncodeToString(sum[:])
}

func parseCertPEM(p []byte) (*x509.Certificate, error) {
	b, _ := pem.Decode(p)
	if b == nil || b.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%w: no certificate in PEM", ErrBadSecrets)
	}
	return x509.ParseCertificate(b.Bytes)
}

func parseKeyPEM(p []byte) (*ecdsa.PrivateKey, error) {
	b, _ := pem.Decode(p)
	if b == nil {
		return nil, fmt.Errorf("%w: no key in PEM", ErrBadSecrets)
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadSecrets, err)
	}
	ek, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%w: key is not ECDSA", ErrBadSecrets)
	}
	return ek, nil
}

func keyPEM(k *ecdsa.PrivateKey) []byte {
	der, _ := x509.MarshalPKCS8PrivateKey(k)
	return pemBlock("PRIVATE KEY", der)
}

func publicKeyPEM(k crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(k)
	if err != nil {
		return nil, err
	}
	return pemBlock("PUBLIC KEY", der), nil
}

func parsePublicKeyPEM(p []byte) (crypto.PublicKey, error) {
	b, _ := pem.Decode(p)
	if b == nil || b.Type != "PUBLIC KEY" {
		return nil, fmt.Errorf("%w: no public key in PEM", ErrBadRequest)
	}
	return x509.ParsePKIXPublicKey(b.Bytes)
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func randSerial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}
