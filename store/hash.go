package store

import (
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"hash"
	"strings"
)

// HashAlgo is a hash algorithm Nix accepts.
type HashAlgo string

// The algorithms Nix 2.8 accepts for fixed outputs and narinfos.
const (
	MD5    HashAlgo = "md5"
	SHA1   HashAlgo = "sha1"
	SHA256 HashAlgo = "sha256"
	SHA512 HashAlgo = "sha512"
)

// Size is the digest length in bytes, or 0 for an unknown algorithm.
func (a HashAlgo) Size() int {
	switch a {
	case MD5:
		return md5.Size
	case SHA1:
		return sha1.Size
	case SHA256:
		return sha256.Size
	case SHA512:
		return sha512.Size
	}
	return 0
}

// New returns a fresh hasher for a, or nil for an unknown algorithm.
func (a HashAlgo) New() hash.Hash {
	switch a {
	case MD5:
		return md5.New()
	case SHA1:
		return sha1.New()
	case SHA256:
		return sha256.New()
	case SHA512:
		return sha512.New()
	}
	return nil
}

// ParseHashAlgo checks that s names a known algorithm.
func ParseHashAlgo(s string) (HashAlgo, error) {
	a := HashAlgo(s)
	if a.Size() == 0 {
		return "", fmt.Errorf("%w: unknown algorithm %q", ErrBadHash, s)
	}
	return a, nil
}

// Hash is a digest with its algorithm.
type Hash struct {
	Algo   HashAlgo
	Digest []byte
}

// SHA256Hash wraps a SHA-256 digest.
func SHA256Hash(d [32]byte) Hash { return Hash{Algo: SHA256, Digest: d[:]} }

// Hex is the lower-case base-16 digest.
func (h Hash) Hex() string { return hex.EncodeToString(h.Digest) }

// Nix32 is the Nix base-32 digest.
func (h Hash) Nix32() string { return EncodeNix32(h.Digest) }

// String is "algo:nix32", the form narinfo NarHash and FileHash use.
func (h Hash) String() string { return string(h.Algo) + ":" + h.Nix32() }

// SRI is "algo-base64".
func (h Hash) SRI() string {
	return string(h.Algo) + "-" + base64.StdEncoding.EncodeToString(h.Digest)
}

// Equal reports whether two hashes have the same algorithm and digest.
func (h Hash) Equal(o Hash) bool {
	return h.Algo == o.Algo && string(h.Digest) == string(o.Digest)
}

// IsZero reports whether h is unset.
func (h Hash) IsZero() bool { return h.Algo == "" && len(h.Digest) == 0 }

// ParseHash parses "algo:digest" or SRI "algo-base64", with the digest in
// base 16, Nix base 32 or base 64, as Nix accepts them.
func ParseHash(s string) (Hash, error) {
	if i := strings.IndexByte(s, ':'); i >= 0 {
		return ParseHashAs(s[:i], s[i+1:])
	}
	if i := strings.IndexByte(s, '-'); i >= 0 {
		a, err := ParseHashAlgo(s[:i])
		if err != nil {
			return Hash{}, err
		}
		d, err := base64.StdEncoding.DecodeString(s[i+1:])
		if err != nil || len(d) != a.Size() {
			return Hash{}, fmt.Errorf("%w: bad SRI digest in %q", ErrBadHash, s)
		}
		return Hash{Algo: a, Digest: d}, nil
	}
	return Hash{}, fmt.Errorf("%w: %q has no algorithm", ErrBadHash, s)
}

// ParseHashAs parses a digest of a known algorithm in base 16, Nix base 32
// or base 64, told apart by length.
func ParseHashAs(algo, digest string) (Hash, error) {
	a, err := ParseHashAlgo(algo)
	if err != nil {
		return Hash{}, err
	}
	n := a.Size()
	var d []byte
	switch len(digest) {
	case 2 * n:
		d, err = hex.DecodeString(digest)
	case Nix32EncodedLen(n):
		d, err = DecodeNix32(digest)
	case base64.StdEncoding.EncodedLen(n):
		d, err = base64.StdEncoding.DecodeString(digest)
	default:
		return Hash{}, fmt.Errorf("%w: %s digest %q has the wrong length", ErrBadHash, algo, digest)
	}
	if err != nil {
		return Hash{}, fmt.Errorf("%w: %s digest %q: %v", ErrBadHash, algo, digest, err)
	}
	if len(d) != n {
		return Hash{}, fmt.Errorf("%w: %s digest %q decodes to %d bytes, want %d", ErrBadHash, algo, digest, len(d), n)
	}
	return Hash{Algo: a, Digest: d}, nil
}

// CompressHash XOR-folds a digest to size bytes, as Nix does to make the
// 160-bit hash part of a store path.
func CompressHash(d []byte, size int) []byte {
	out := make([]byte, size)
	for i, b := range d {
		out[i%size] ^= b
	}
	return out
}
