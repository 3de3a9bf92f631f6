package store

import "fmt"

// nix32Alphabet is Nix's base-32 alphabet: no e, o, t or u.
const nix32Alphabet = "0123456789abcdfghijklmnpqrsvwxyz"

var nix32Index = func() (t [256]int8) {
	for i := range t {
		t[i] = -1
	}
	for i := 0; i < len(nix32Alphabet); i++ {
		t[nix32Alphabet[i]] = int8(i)
	}
	return t
}()

// Nix32EncodedLen is the length of the Nix base-32 text for n bytes.
func Nix32EncodedLen(n int) int {
	if n == 0 {
		return 0
	}
	return (8*n-1)/5 + 1
}

// Nix32DecodedLen is the number of bytes that m base-32 characters encode,
// or -1 if no byte length encodes to exactly m characters.
func Nix32DecodedLen(m int) int {
	n := m * 5 / 8
	if Nix32EncodedLen(n) != m {
		return -1
	}
	return n
}

// EncodeNix32 prints b in Nix base 32: b read as a little-endian integer,
// digits most significant first.
func EncodeNix32(b []byte) string {
	n := Nix32EncodedLen(len(b))
	out := make([]byte, n)
	for k := 0; k < n; k++ {
		bit := 5 * (n - 1 - k)
		i, j := bit/8, uint(bit%8)
		c := int(b[i]) >> j
		if i+1 < len(b) {
			c |= int(b[i+1]) << (8 - j)
		}
		out[k] = nix32Alphabet[c&0x1f]
	}
	return string(out)
}

// DecodeNix32 parses Nix base-32 text. It rejects characters outside the
// alphabet, lengths no byte string has, and digits that set bits past the
// last byte.
func DecodeNix32(s string) ([]byte, error) {
	n := Nix32DecodedLen(len(s))
	if n < 0 {
		return nil, fmt.Errorf("%w: nix32 length %d", ErrBadEncoding, len(s))
	}
	out := make([]byte, n)
	for k := 0; k < len(s); k++ {
		d := nix32Index[s[len(s)-1-k]]
		if d < 0 {
			return nil, fmt.Errorf("%w: %q is not a nix32 character", ErrBadEncoding, s[len(s)-1-k])
		}
		bit := 5 * k
		i, j := bit/8, uint(bit%8)
		out[i] |= byte(int(d) << j)
		carry := int(d) >> (8 - j)
		if i+1 < n {
			out[i+1] |= byte(carry)
		} else if carry != 0 {
			return nil, fmt.Errorf("%w: nix32 %q has bits past its length", ErrBadEncoding, s)
		}
	}
	return out, nil
}
