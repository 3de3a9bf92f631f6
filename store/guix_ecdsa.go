package store

import (
	"crypto/hmac"
	"crypto/sha256"
	"math/big"
	"slices"

	"filippo.io/edwards25519"
	"filippo.io/edwards25519/field"
)

// Guix signs with libgcrypt's ECDSA over the Ed25519 twisted Edwards curve
// (not EdDSA). The curve order n has 253 bits; digests are truncated to
// their leftmost 253 bits, nonces follow RFC 6979 with HMAC-SHA-256.

// guixOrder is n = 2^252 + 27742317777372353535851937790883648493.
var guixOrder, _ = new(big.Int).SetString("7237005577332262213973186563042994240857116359379907606001950938285454250989", 10)

const guixQBits = 253

// guixScalar reduces a non-negative integer below 2^512 mod n.
func guixScalar(x *big.Int) *edwards25519.Scalar {
	var wide [64]byte
	be := x.Bytes()
	for i, c := range be {
		wide[len(be)-1-i] = c
	}
	s, err := new(edwards25519.Scalar).SetUniformBytes(wide[:])
	if err != nil {
		panic("store: scalar reduction: " + err.Error())
	}
	return s
}

// guixScalarInt is the integer value of a scalar.
func guixScalarInt(s *edwards25519.Scalar) *big.Int {
	le := s.Bytes()
	slices.Reverse(le)
	return new(big.Int).SetBytes(le)
}

// guixBits2Int is RFC 6979 bits2int with qlen 253: the leftmost 253 bits.
func guixBits2Int(b []byte) *big.Int {
	x := new(big.Int).SetBytes(b)
	if n := len(b) * 8; n > guixQBits {
		x.Rsh(x, uint(n-guixQBits))
	}
	return x
}

// guixAffineX is the affine Edwards x coordinate of p as an integer.
func guixAffineX(p *edwards25519.Point) *big.Int {
	X, _, Z, _ := p.ExtendedCoordinates()
	zinv := new(field.Element).Invert(Z)
	le := new(field.Element).Multiply(X, zinv).Bytes()
	slices.Reverse(le)
	return new(big.Int).SetBytes(le)
}

func int2octets32(x *big.Int) []byte {
	return x.FillBytes(make([]byte, 32))
}

// guixNonces yields RFC 6979 candidate nonces (HMAC-SHA-256, qlen 253,
// rlen 32 bytes) for key d as stored and digest h, in order.
func guixNonces(d *big.Int, h []byte, yield func(k *big.Int) bool) {
	z := guixBits2Int(h)
	if z.Cmp(guixOrder) >= 0 {
		z.Sub(z, guixOrder)
	}
	x, h1 := int2octets32(d), int2octets32(z)
	mac := func(key []byte, parts ...[]byte) []byte {
		m := hmac.New(sha256.New, key)
		for _, p := range parts {
			m.Write(p)
		}
		return m.Sum(nil)
	}
	V := make([]byte, 32)
	for i := range V {
		V[i] = 1
	}
	K := make([]byte, 32)
	K = mac(K, V, []byte{0}, x, h1)
	V = mac(K, V)
	K = mac(K, V, []byte{1}, x, h1)
	V = mac(K, V)
	for {
		V = mac(K, V) // one block of 256 bits covers qlen 253
		k := guixBits2Int(V)
		if k.Sign() > 0 && k.Cmp(guixOrder) < 0 && !yield(k) {
			return
		}
		K = mac(K, V, []byte{0})
		V = mac(K, V)
	}
}

// guixSign signs digest h with secret scalar d (as stored), returning r and
// s as integers. It reproduces libgcrypt's deterministic output.
func guixSign(d *big.Int, h []byte) (r, s *big.Int) {
	e := guixScalar(guixBits2Int(h))
	ds := guixScalar(d)
	guixNonces(d, h, func(k *big.Int) bool {
		ks := guixScalar(k)
		R := new(edwards25519.Point).ScalarBaseMult(ks)
		rs := guixScalar(guixAffineX(R))
		if rs.Equal(edwards25519.NewScalar()) == 1 {
			return true
		}
		// s = k⁻¹ (e + r·d) mod n
		sum := new(edwards25519.Scalar).MultiplyAdd(rs, ds, e)
		ss := new(edwards25519.Scalar).Multiply(new(edwards25519.Scalar).Invert(ks), sum)
		if ss.Equal(edwards25519.NewScalar()) == 1 {
			return true
		}
		r, s = guixScalarInt(rs), guixScalarInt(ss)
		return false
	})
	return r, s
}

// guixVerify checks an ECDSA signature (r, s) of digest h by public point q
// (32-byte RFC 8032 encoding).
func guixVerify(q []byte, h []byte, r, s *big.Int) bool {
	if r.Sign() <= 0 || s.Sign() <= 0 || r.Cmp(guixOrder) >= 0 || s.Cmp(guixOrder) >= 0 {
		return false
	}
	Q, err := new(edwards25519.Point).SetBytes(q)
	if err != nil {
		return false
	}
	w := new(edwards25519.Scalar).Invert(guixScalar(s))
	u1 := new(edwards25519.Scalar).Multiply(guixScalar(guixBits2Int(h)), w)
	u2 := new(edwards25519.Scalar).Multiply(guixScalar(r), w)
	X := new(edwards25519.Point).VarTimeDoubleScalarBaseMult(u2, Q, u1)
	if X.Equal(edwards25519.NewIdentityPoint()) == 1 {
		return false
	}
	return new(big.Int).Mod(guixAffineX(X), guixOrder).Cmp(r) == 0
}

// guixPublicPoint is d·G in RFC 8032 encoding.
func guixPublicPoint(d *big.Int) []byte {
	return new(edwards25519.Point).ScalarBaseMult(guixScalar(d)).Bytes()
}

// guixValidPoint reports whether q decodes to a curve point.
func guixValidPoint(q []byte) bool {
	_, err := new(edwards25519.Point).SetBytes(q)
	return err == nil
}
