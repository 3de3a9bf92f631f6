package store

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"math/big"
)

// GuixPublicKey is a Guix signing key's public half, as in
// /etc/guix/signing-key.pub: (public-key (ecc (curve Ed25519) (q #…#))).
type GuixPublicKey struct {
	Q    []byte // 32-byte RFC 8032 point encoding
	expr sexp   // the parsed (public-key …), compared structurally
}

// GuixSecretKey is a Guix signing key, as in /etc/guix/signing-key.sec.
type GuixSecretKey struct {
	D    *big.Int // the ECDSA scalar as stored (not reduced mod n)
	Q    []byte   // 32-byte RFC 8032 encoding of d·G
	expr sexp     // the parsed (private-key …)
}

// GuixACL is /etc/guix/acl: (acl (entry <public-key> (tag (guix import))) …).
type GuixACL struct {
	expr sexp
}

// guixEcc extracts curve and q from an (ecc …) key and checks them.
func guixEcc(x sexp, what string) (q []byte, err error) {
	ecc, ok := x.find("ecc")
	if !ok {
		return nil, fmt.Errorf("%w: %s is not an ecc key", ErrBadKey, what)
	}
	curve, _ := ecc.find("curve")
	if c := string(curve.nth(1)); c != "Ed25519" {
		return nil, fmt.Errorf("%w: %s: curve %q, want Ed25519", ErrBadKey, what, c)
	}
	qs, _ := ecc.find("q")
	q = qs.nth(1)
	if len(q) == 33 && q[0] == 0x40 { // libgcrypt's native-point prefix
		q = q[1:]
	}
	if len(q) == 0 || len(q) > 32 {
		return nil, fmt.Errorf("%w: %s: q is %d bytes, want 32", ErrBadKey, what, len(q))
	}
	q = append(make([]byte, 32-len(q)), q...)
	if !guixValidPoint(q) {
		return nil, fmt.Errorf("%w: %s: q is not a curve point", ErrBadKey, what)
	}
	return q, nil
}

// ParseGuixPublicKey parses a signing-key.pub file (any sexp syntax).
func ParseGuixPublicKey(b []byte) (GuixPublicKey, error) {
	x, err := parseSexp(b)
	if err != nil {
		return GuixPublicKey{}, err
	}
	return guixPublicFromSexp(x)
}

func guixPublicFromSexp(x sexp) (GuixPublicKey, error) {
	if x.head() != "public-key" {
		return GuixPublicKey{}, fmt.Errorf("%w: not a (public-key …)", ErrBadKey)
	}
	q, err := guixEcc(x, "public key")
	if err != nil {
		return GuixPublicKey{}, err
	}
	return GuixPublicKey{Q: q, expr: x}, nil
}

// ParseGuixSecretKey parses a signing-key.sec file.
func ParseGuixSecretKey(b []byte) (GuixSecretKey, error) {
	x, err := parseSexp(b)
	if err != nil {
		return GuixSecretKey{}, err
	}
	if x.head() != "private-key" {
		return GuixSecretKey{}, fmt.Errorf("%w: not a (private-key …)", ErrBadKey)
	}
	q, err := guixEcc(x, "secret key")
	if err != nil {
		return GuixSecretKey{}, err
	}
	ds, _ := x.find("d")
	d := new(big.Int).SetBytes(ds.nth(1))
	if d.Sign() == 0 || d.BitLen() > 256 {
		return GuixSecretKey{}, fmt.Errorf("%w: secret key: bad d", ErrBadKey)
	}
	if !bytes.Equal(guixPublicPoint(d), q) {
		return GuixSecretKey{}, fmt.Errorf("%w: secret key: q is not d·G", ErrBadKey)
	}
	return GuixSecretKey{D: d, Q: q, expr: x}, nil
}

// GenerateGuixKey makes a key the way `guix archive --generate-key` does
// with libgcrypt: d is 32 random bytes with the top bits set to 01 and the
// low three bits cleared. A key whose q would start with a zero byte is
// drawn again: libgcrypt may print such a q shortened, and a key of ours
// should print the same either way.
func GenerateGuixKey() (GuixSecretKey, error) {
	for {
		var buf [32]byte
		if _, err := rand.Read(buf[:]); err != nil {
			return GuixSecretKey{}, fmt.Errorf("generate guix key: %w", err)
		}
		buf[0] = buf[0]&0x7f | 0x40
		buf[31] &= 0xf8
		d := new(big.Int).SetBytes(buf[:])
		q := guixPublicPoint(d)
		if q[0] == 0 {
			continue
		}
		return newGuixSecretKey(d, q), nil
	}
}

func newGuixSecretKey(d *big.Int, q []byte) GuixSecretKey {
	x := sList(sAtom("private-key"), sList(sAtom("ecc"),
		sList(sAtom("curve"), sAtom("Ed25519")),
		sList(sAtom("q"), sBytes(q)),
		sList(sAtom("d"), sBytes(d.Bytes()))))
	return GuixSecretKey{D: d, Q: q, expr: x}
}

// Public returns the public half: the (ecc …) parameters without d.
func (k GuixSecretKey) Public() GuixPublicKey {
	ecc, ok := k.expr.find("ecc")
	if !ok {
		ecc = sList(sAtom("ecc"), sList(sAtom("curve"), sAtom("Ed25519")), sList(sAtom("q"), sBytes(k.Q)))
	}
	pub := sList(sAtom("ecc"))
	for _, e := range ecc.list[1:] {
		if e.isList && e.head() == "d" {
			continue
		}
		pub.list = append(pub.list, e)
	}
	return GuixPublicKey{Q: k.Q, expr: sList(sAtom("public-key"), pub)}
}

// PublicKeyText is signing-key.pub as Guix writes it.
func (k GuixSecretKey) PublicKeyText() []byte { return k.Public().Text() }

// SecretKeyText is signing-key.sec as Guix writes it.
func (k GuixSecretKey) SecretKeyText() []byte { return k.expr.advanced() }

// Text is the key in libgcrypt's advanced format, as in signing-key.pub.
func (k GuixPublicKey) Text() []byte { return k.sexpr().advanced() }

func (k GuixPublicKey) sexpr() sexp {
	if k.expr.isList {
		return k.expr
	}
	return sList(sAtom("public-key"), sList(sAtom("ecc"),
		sList(sAtom("curve"), sAtom("Ed25519")), sList(sAtom("q"), sBytes(k.Q))))
}

// Equal reports structural equality, the test Guix applies against its ACL.
func (k GuixPublicKey) Equal(o GuixPublicKey) bool { return k.sexpr().equal(o.sexpr()) }

// ParseGuixACL parses an /etc/guix/acl file.
func ParseGuixACL(b []byte) (GuixACL, error) {
	x, err := parseSexp(b)
	if err != nil {
		return GuixACL{}, err
	}
	if x.head() != "acl" {
		return GuixACL{}, fmt.Errorf("%w: not an (acl …)", ErrBadKey)
	}
	return GuixACL{expr: x}, nil
}

// NewGuixACL makes an ACL authorizing keys, as `guix archive --authorize`
// would write it (duplicates removed).
func NewGuixACL(keys ...GuixPublicKey) GuixACL {
	acl := sList(sAtom("acl"))
	for _, k := range keys {
		e := guixACLEntry(k)
		dup := false
		for _, o := range acl.list[1:] {
			dup = dup || o.equal(e)
		}
		if !dup {
			acl.list = append(acl.list, e)
		}
	}
	return GuixACL{expr: acl}
}

func guixACLEntry(k GuixPublicKey) sexp {
	return sList(sAtom("entry"), k.sexpr(), sList(sAtom("tag"), sList(sAtom("guix"), sAtom("import"))))
}

// Authorizes reports whether the ACL holds (entry k (tag (guix import))),
// compared structurally as Guix does.
func (a GuixACL) Authorizes(k GuixPublicKey) bool {
	if !a.expr.isList {
		return false
	}
	want := guixACLEntry(k)
	for _, e := range a.expr.list[1:] {
		if e.equal(want) {
			return true
		}
	}
	return false
}

// Text is the ACL file in libgcrypt's advanced format.
func (a GuixACL) Text() []byte {
	if !a.expr.isList {
		return sList(sAtom("acl")).advanced()
	}
	return a.expr.advanced()
}
