package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Guix narinfo verdicts, named after the statuses of Guix's
// signature-status. Each wraps ErrBadSignature.
var (
	// ErrGuixUnsigned: no usable Signature field, or the text before it
	// lacks StorePath, NarHash or References.
	ErrGuixUnsigned = fmt.Errorf("%w: unsigned", ErrBadSignature)
	// ErrGuixCorruptSignature: the signature has no data or public-key.
	ErrGuixCorruptSignature = fmt.Errorf("%w: corrupt-signature", ErrBadSignature)
	// ErrGuixUnauthorizedKey: the signing key is not in the ACL.
	ErrGuixUnauthorizedKey = fmt.Errorf("%w: unauthorized-key", ErrBadSignature)
	// ErrGuixHashMismatch: the signed hash is not that of the narinfo text.
	ErrGuixHashMismatch = fmt.Errorf("%w: hash-mismatch", ErrBadSignature)
	// ErrGuixInvalidSignature: the ECDSA signature does not verify.
	ErrGuixInvalidSignature = fmt.Errorf("%w: invalid-signature", ErrBadSignature)
)

// guixMandatoryFields must appear in the signed part, or the narinfo counts
// as unsigned.
var guixMandatoryFields = []string{"StorePath", "NarHash", "References"}

type guixField struct{ name, value string }

// guixRecutils reads fields as Guix's recutils->alist does: lines
// "Name: value" (name of non-space printable characters), "#" comments,
// "+" continuation lines, leading blank lines skipped, and a blank line
// ending the record.
func guixRecutils(s string) ([]guixField, error) {
	var out []guixField
	for len(s) > 0 {
		line, rest, _ := strings.Cut(s, "\n")
		s = rest
		switch {
		case line == "" && len(out) == 0:
			continue
		case line == "":
			return out, nil
		case line[0] == '#':
			continue
		case line[0] == '+':
			if len(out) == 0 {
				return nil, fmt.Errorf("%w: continuation line before any field", ErrBadNarInfo)
			}
			v := strings.TrimPrefix(line[1:], " ")
			out[len(out)-1].value += "\n" + v
			continue
		}
		sp := strings.IndexByte(line, ' ')
		if sp < 2 || line[sp-1] != ':' {
			return nil, fmt.Errorf("%w: line %q is not a field", ErrBadNarInfo, line)
		}
		name := line[:sp-1]
		for i := 0; i < len(name); i++ {
			if name[i] <= ' ' || name[i] == 0x7f {
				return nil, fmt.Errorf("%w: line %q is not a field", ErrBadNarInfo, line)
			}
		}
		out = append(out, guixField{name, line[sp+1:]})
	}
	return out, nil
}

// guixSignedBody is the text before the first "Signature:" anywhere, which
// is what Guix hashes, and whether it holds the mandatory fields.
func guixSignedBody(raw []byte) ([]byte, error) {
	i := bytes.Index(raw, []byte("Signature:"))
	if i < 0 {
		return nil, fmt.Errorf("%w: no Signature", ErrGuixUnsigned)
	}
	body := raw[:i]
	fields, err := guixRecutils(string(body))
	if err != nil {
		return nil, fmt.Errorf("%w: signed part: %v", ErrGuixUnsigned, err)
	}
	for _, m := range guixMandatoryFields {
		found := false
		for _, f := range fields {
			found = found || f.name == m
		}
		if !found {
			return nil, fmt.Errorf("%w: %s is not in the signed part", ErrGuixUnsigned, m)
		}
	}
	return body, nil
}

// decodeGuixSignature turns a Signature value "1;host;base64" into the
// signature sexp: base64, then UTF-8 text whose code points are the
// ISO-8859-1 bytes libgcrypt printed.
func decodeGuixSignature(v string) (sexp, error) {
	parts := strings.Split(strings.TrimSpace(v), ";")
	if len(parts) != 3 {
		return sexp{}, fmt.Errorf("%w: Signature is not version;host;signature", ErrGuixUnsigned)
	}
	if n, err := strconv.Atoi(parts[0]); err != nil || n != 1 || parts[0][0] == '+' {
		return sexp{}, fmt.Errorf("%w: Signature version %q is not 1", ErrGuixUnsigned, parts[0])
	}
	text, err := base64.StdEncoding.DecodeString(parts[2])
	if err != nil {
		return sexp{}, fmt.Errorf("%w: Signature base64: %v", ErrGuixUnsigned, err)
	}
	latin1, ok := utf8ToLatin1(text)
	if !ok {
		return sexp{}, fmt.Errorf("%w: Signature text is not ISO-8859-1 as UTF-8", ErrGuixUnsigned)
	}
	x, err := parseSexp(latin1)
	if err != nil {
		return sexp{}, fmt.Errorf("%w: %v", ErrGuixUnsigned, err)
	}
	return x, nil
}

func utf8ToLatin1(b []byte) ([]byte, bool) {
	out := make([]byte, 0, len(b))
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		if (r == utf8.RuneError && n <= 1) || r > 0xff {
			return nil, false
		}
		out = append(out, byte(r))
		b = b[n:]
	}
	return out, true
}

func latin1ToUTF8(b []byte) []byte {
	out := make([]byte, 0, len(b))
	for _, c := range b {
		out = utf8.AppendRune(out, rune(c))
	}
	return out
}

// VerifyGuixNarInfo checks a narinfo's Guix signature exactly as Guix's
// valid-narinfo? does: nil means valid-signature; otherwise the error wraps
// one of ErrGuixUnsigned, ErrGuixCorruptSignature, ErrGuixUnauthorizedKey,
// ErrGuixHashMismatch or ErrGuixInvalidSignature, or ErrBadNarInfo when the
// text cannot be read as fields at all. raw must be the narinfo bytes as
// served: the signature covers the text before the first "Signature:".
func VerifyGuixNarInfo(raw []byte, acl GuixACL) error {
	fields, err := guixRecutils(string(raw))
	if err != nil {
		return err
	}
	sigValue, found := "", false
	for _, f := range fields {
		if f.name == "Signature" {
			sigValue, found = f.value, true
			break
		}
	}
	if !found {
		return fmt.Errorf("%w: no Signature field", ErrGuixUnsigned)
	}
	sig, err := decodeGuixSignature(sigValue)
	if err != nil {
		return err
	}
	body, err := guixSignedBody(raw)
	if err != nil {
		return err
	}
	return guixSignatureStatus(sig, sha256.Sum256(body), acl)
}

// guixSignatureStatus is Guix's signature-status.
func guixSignatureStatus(sig sexp, digest [32]byte, acl GuixACL) error {
	data, okData := sig.find("data")
	subject, okKey := sig.find("public-key")
	if !okData || !okKey {
		return ErrGuixCorruptSignature
	}
	pub := GuixPublicKey{expr: subject}
	if !acl.Authorizes(pub) {
		return ErrGuixUnauthorizedKey
	}
	h, _ := data.find("hash")
	embedded := h.nth(2)
	if !bytes.Equal(embedded, digest[:]) {
		return ErrGuixHashMismatch
	}
	if err := guixVerifySexp(sig, embedded, subject); err != nil {
		return fmt.Errorf("%w: %v", ErrGuixInvalidSignature, err)
	}
	return nil
}

// guixVerifySexp is gcry_pk_verify for an ECDSA Ed25519 key.
func guixVerifySexp(sig sexp, digest []byte, subject sexp) error {
	key, err := guixPublicFromSexp(subject)
	if err != nil {
		return err
	}
	sv, ok := sig.find("sig-val")
	if !ok {
		return errors.New("no sig-val")
	}
	ecdsa, ok := sv.find("ecdsa")
	if !ok {
		return errors.New("sig-val is not ecdsa")
	}
	rl, _ := ecdsa.find("r")
	sl, _ := ecdsa.find("s")
	r, s := rl.nth(1), sl.nth(1)
	if len(r) == 0 || len(s) == 0 {
		return errors.New("sig-val lacks r or s")
	}
	if !guixVerify(key.Q, digest, new(big.Int).SetBytes(r), new(big.Int).SetBytes(s)) {
		return errors.New("ecdsa check failed")
	}
	return nil
}

// VerifyGuixNarInfoKey is VerifyGuixNarInfo with an ACL of one key.
func VerifyGuixNarInfoKey(raw []byte, key GuixPublicKey) error {
	return VerifyGuixNarInfo(raw, NewGuixACL(key))
}

// guixSignatureSexp builds (signature (data …) (sig-val …) (public-key …))
// for body, as Guix's signature-sexp does.
func (k GuixSecretKey) guixSignatureSexp(body []byte) sexp {
	digest := sha256.Sum256(body)
	r, s := guixSign(k.D, digest[:])
	return sList(sAtom("signature"),
		sList(sAtom("data"),
			sList(sAtom("flags"), sAtom("rfc6979")),
			sList(sAtom("hash"), sAtom("sha256"), sBytes(digest[:]))),
		sList(sAtom("sig-val"),
			sList(sAtom("ecdsa"),
				sList(sAtom("r"), sBytes(r.Bytes())),
				sList(sAtom("s"), sBytes(s.Bytes())))),
		k.Public().sexpr())
}

// SignNarInfoBody signs the signed part of a narinfo (the exact bytes
// before "Signature:") and returns the Signature value
// "1;<hostname>;<base64>", byte-identical to what guix publish writes.
func (k GuixSecretKey) SignNarInfoBody(body []byte, hostname string) string {
	text := k.guixSignatureSexp(body).advanced()
	return "1;" + hostname + ";" + base64.StdEncoding.EncodeToString(latin1ToUTF8(text))
}

// GuixNarInfoText renders ni in the layout of current guix publish, signed
// by k: StorePath, NarHash, NarSize, References (in ni's order), Deriver?,
// Signature, then the unsigned part: one URL/Compression/FileHash?/FileSize?
// group per entry of ni.Files (or one from URL, Compression, FileHash and
// FileSize), System?, Nix Sig lines and CA?. Nix reads the same text, so
// one narinfo can carry both signature styles.
func (k GuixSecretKey) GuixNarInfoText(ni *NarInfo, hostname string) []byte {
	var b strings.Builder
	line := func(k, v string) { b.WriteString(k + ": " + v + "\n") }
	line("StorePath", ni.StorePath)
	line("NarHash", ni.NarHash.String())
	line("NarSize", strconv.FormatInt(ni.NarSize, 10))
	line("References", strings.Join(ni.References, " "))
	if ni.Deriver != "" {
		line("Deriver", ni.Deriver)
	}
	body := b.String()
	line("Signature", k.SignNarInfoBody([]byte(body), hostname))
	files := ni.Files
	if len(files) == 0 {
		files = []NarFile{{URL: ni.URL, Compression: ni.Compression, FileHash: ni.FileHash, FileSize: ni.FileSize}}
	}
	for _, f := range files {
		line("URL", f.URL)
		comp := f.Compression
		if comp == "" {
			comp = "bzip2"
		}
		line("Compression", comp)
		if !f.FileHash.IsZero() {
			line("FileHash", f.FileHash.String())
		}
		if f.FileSize > 0 {
			line("FileSize", strconv.FormatInt(f.FileSize, 10))
		}
	}
	if ni.System != "" {
		line("System", ni.System)
	}
	for _, s := range sortedUnique(ni.Sigs) {
		line("Sig", s)
	}
	if ni.CA != "" {
		line("CA", ni.CA)
	}
	return []byte(b.String())
}
