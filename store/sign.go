package store

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"strings"
)

// SecretKey is a Nix binary-cache signing key, as made by
// `nix-store --generate-binary-cache-key`.
type SecretKey struct {
	Name string
	Key  ed25519.PrivateKey // 64 bytes: seed ‖ public key
}

// PublicKey is a Nix binary-cache public key (a trusted-public-keys entry).
type PublicKey struct {
	Name string
	Key  ed25519.PublicKey // 32 bytes
}

// GenerateKey makes a fresh key pair named name (e.g. "cache.example.org-1").
func GenerateKey(name string) (SecretKey, error) {
	if err := checkKeyName(name); err != nil {
		return SecretKey{}, err
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return SecretKey{}, fmt.Errorf("generate key: %w", err)
	}
	return SecretKey{Name: name, Key: priv}, nil
}

func checkKeyName(name string) error {
	if name == "" || strings.ContainsAny(name, ": \t\r\n") {
		return fmt.Errorf("%w: key name %q is empty or has a colon or space", ErrBadKey, name)
	}
	return nil
}

// parseNixKey splits "name:base64" and checks the decoded length. Surrounding
// white space (a trailing newline in a file) is ignored.
func parseNixKey(s string, size int, what string) (string, []byte, error) {
	s = strings.TrimSpace(s)
	name, b64, ok := strings.Cut(s, ":")
	if !ok || name == "" || b64 == "" {
		return "", nil, fmt.Errorf("%w: %s is not name:base64", ErrBadKey, what)
	}
	key, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return "", nil, fmt.Errorf("%w: %s %q: %v", ErrBadKey, what, name, err)
	}
	if len(key) != size {
		return "", nil, fmt.Errorf("%w: %s %q is %d bytes, want %d", ErrBadKey, what, name, len(key), size)
	}
	return name, key, nil
}

// ParseSecretKey parses a secret key file's text "name:base64(64 bytes)".
func ParseSecretKey(s string) (SecretKey, error) {
	name, key, err := parseNixKey(s, ed25519.PrivateKeySize, "secret key")
	if err != nil {
		return SecretKey{}, err
	}
	priv := ed25519.PrivateKey(key)
	// The second half must be the public key of the seed.
	if !priv.Public().(ed25519.PublicKey).Equal(ed25519.NewKeyFromSeed(priv.Seed()).Public()) {
		return SecretKey{}, fmt.Errorf("%w: secret key %q: public half does not match the seed", ErrBadKey, name)
	}
	return SecretKey{Name: name, Key: priv}, nil
}

// ParsePublicKey parses "name:base64(32 bytes)".
func ParsePublicKey(s string) (PublicKey, error) {
	name, key, err := parseNixKey(s, ed25519.PublicKeySize, "public key")
	if err != nil {
		return PublicKey{}, err
	}
	return PublicKey{Name: name, Key: ed25519.PublicKey(key)}, nil
}

// Public returns the matching public key.
func (k SecretKey) Public() PublicKey {
	return PublicKey{Name: k.Name, Key: k.Key.Public().(ed25519.PublicKey)}
}

// String is "name:base64", the whole content of a Nix secret key file
// (which has no trailing newline).
func (k SecretKey) String() string {
	return k.Name + ":" + base64.StdEncoding.EncodeToString(k.Key)
}

// String is "name:base64", as in a public key file or trusted-public-keys.
func (k PublicKey) String() string {
	return k.Name + ":" + base64.StdEncoding.EncodeToString(k.Key)
}

// Sign signs a fingerprint and returns the Sig value "name:base64".
func (k SecretKey) Sign(fingerprint string) string {
	return k.Name + ":" + base64.StdEncoding.EncodeToString(ed25519.Sign(k.Key, []byte(fingerprint)))
}

// SignNarInfo appends this key's signature of ni's fingerprint to ni.Sigs,
// unless an identical one is there already.
func (k SecretKey) SignNarInfo(ni *NarInfo, storeDir string) {
	sig := k.Sign(ni.Fingerprint(storeDir))
	for _, s := range ni.Sigs {
		if s == sig {
			return
		}
	}
	ni.Sigs = append(ni.Sigs, sig)
}

// Verify reports whether sig ("name:base64") is this key's valid signature
// of fingerprint. A signature by a key of another name never verifies.
func (k PublicKey) Verify(fingerprint, sig string) bool {
	name, b64, ok := strings.Cut(sig, ":")
	if !ok || name != k.Name || len(k.Key) != ed25519.PublicKeySize {
		return false
	}
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(raw) != ed25519.SignatureSize {
		return false
	}
	return ed25519.Verify(k.Key, []byte(fingerprint), raw)
}

// VerifyNarInfo reports whether any of ni's Sigs is a valid signature by k.
func (k PublicKey) VerifyNarInfo(ni *NarInfo, storeDir string) bool {
	fp := ni.Fingerprint(storeDir)
	for _, s := range ni.Sigs {
		if k.Verify(fp, s) {
			return true
		}
	}
	return false
}
