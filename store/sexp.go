package store

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strconv"
)

// sexp is a libgcrypt S-expression: an atom (a byte string) or a list.
type sexp struct {
	isList bool
	atom   []byte
	list   []sexp
}

func sAtom(s string) sexp      { return sexp{atom: []byte(s)} }
func sBytes(b []byte) sexp     { return sexp{atom: b} }
func sList(items ...sexp) sexp { return sexp{isList: true, list: items} }
func (x sexp) head() string    { return string(x.nth(0)) }
func (x sexp) isAtom() bool    { return !x.isList }
func (x sexp) String() string  { return string(x.advanced()) }
func sexpErr(f string, a ...any) error {
	return fmt.Errorf("%w: s-expression: %s", ErrBadKey, fmt.Sprintf(f, a...))
}

// nth returns the i-th element of a list if it is an atom, else nil.
func (x sexp) nth(i int) []byte {
	if !x.isList || i >= len(x.list) || x.list[i].isList {
		return nil
	}
	return x.list[i].atom
}

// find returns the first list, in textual order, whose first element is
// the atom tok (x itself included), like gcry_sexp_find_token.
func (x sexp) find(tok string) (sexp, bool) {
	if !x.isList {
		return sexp{}, false
	}
	if len(x.list) > 0 && x.list[0].isAtom() && string(x.list[0].atom) == tok {
		return x, true
	}
	for _, c := range x.list {
		if r, ok := c.find(tok); ok {
			return r, true
		}
	}
	return sexp{}, false
}

// equal compares structure and atom bytes, as Guile's equal? does on
// canonical-sexp->sexp.
func (x sexp) equal(y sexp) bool {
	if x.isList != y.isList {
		return false
	}
	if !x.isList {
		return bytes.Equal(x.atom, y.atom)
	}
	if len(x.list) != len(y.list) {
		return false
	}
	for i := range x.list {
		if !x.list[i].equal(y.list[i]) {
			return false
		}
	}
	return true
}

// parseSexp reads one S-expression in any of libgcrypt's syntaxes:
// canonical "N:bytes", tokens, "quoted strings", #hex# and |base64|, with
// white space anywhere between elements. Only white space may follow it.
func parseSexp(b []byte) (sexp, error) {
	p := sexpParser{b: b}
	p.space()
	if p.i >= len(b) || b[p.i] != '(' {
		return sexp{}, sexpErr("does not start with (")
	}
	x, err := p.value(0)
	if err != nil {
		return sexp{}, err
	}
	p.space()
	if p.i != len(b) {
		return sexp{}, sexpErr("trailing data at byte %d", p.i)
	}
	return x, nil
}

type sexpParser struct {
	b []byte
	i int
}

func isSexpSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'
}
func isSexpAlpha(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
func isSexpDigit(c byte) bool { return '0' <= c && c <= '9' }

const sexpTokenSpecials = "-./_:*+="

func isSexpTokenChar(c byte) bool {
	return isSexpAlpha(c) || isSexpDigit(c) || bytes.IndexByte([]byte(sexpTokenSpecials), c) >= 0
}

func (p *sexpParser) space() {
	for p.i < len(p.b) && isSexpSpace(p.b[p.i]) {
		p.i++
	}
}

const sexpMaxDepth = 64

func (p *sexpParser) value(depth int) (sexp, error) {
	if p.i >= len(p.b) {
		return sexp{}, sexpErr("unexpected end")
	}
	c := p.b[p.i]
	switch {
	case c == '(':
		if depth >= sexpMaxDepth {
			return sexp{}, sexpErr("nested too deeply")
		}
		p.i++
		l := sList()
		for {
			p.space()
			if p.i >= len(p.b) {
				return sexp{}, sexpErr("unclosed list")
			}
			if p.b[p.i] == ')' {
				p.i++
				return l, nil
			}
			v, err := p.value(depth + 1)
			if err != nil {
				return sexp{}, err
			}
			l.list = append(l.list, v)
		}
	case c == '"':
		return p.quoted()
	case c == '#':
		return p.delimited('#', func(s []byte) ([]byte, error) {
			s = bytes.Map(func(r rune) rune {
				if r < 0x80 && isSexpSpace(byte(r)) {
					return -1
				}
				return r
			}, s)
			return hex.DecodeString(string(s))
		})
	case c == '|':
		return p.delimited('|', func(s []byte) ([]byte, error) {
			s = bytes.Map(func(r rune) rune {
				if r < 0x80 && isSexpSpace(byte(r)) {
					return -1
				}
				return r
			}, s)
			return base64.StdEncoding.DecodeString(string(s))
		})
	case isSexpDigit(c):
		start := p.i
		for p.i < len(p.b) && isSexpDigit(p.b[p.i]) {
			p.i++
		}
		if p.i >= len(p.b) || p.b[p.i] != ':' {
			return sexp{}, sexpErr("length prefix at byte %d without ':'", start)
		}
		n, err := strconv.Atoi(string(p.b[start:p.i]))
		p.i++
		if err != nil || n > len(p.b)-p.i {
			return sexp{}, sexpErr("bad length prefix at byte %d", start)
		}
		v := bytes.Clone(p.b[p.i : p.i+n])
		p.i += n
		return sBytes(v), nil
	case isSexpAlpha(c) || bytes.IndexByte([]byte(sexpTokenSpecials), c) >= 0:
		start := p.i
		for p.i < len(p.b) && isSexpTokenChar(p.b[p.i]) {
			p.i++
		}
		return sBytes(bytes.Clone(p.b[start:p.i])), nil
	}
	return sexp{}, sexpErr("unexpected byte %q at %d", c, p.i)
}

func (p *sexpParser) delimited(end byte, decode func([]byte) ([]byte, error)) (sexp, error) {
	start := p.i
	j := bytes.IndexByte(p.b[p.i+1:], end)
	if j < 0 {
		return sexp{}, sexpErr("unterminated %c at byte %d", end, start)
	}
	v, err := decode(p.b[p.i+1 : p.i+1+j])
	if err != nil {
		return sexp{}, sexpErr("bad %c string at byte %d: %v", end, start, err)
	}
	p.i += j + 2
	if v == nil {
		v = []byte{}
	}
	return sBytes(v), nil
}

// quoted reads a "string" with libgcrypt's escapes: \b \t \v \n \f \r \"
// \' \\, \xHH, three octal digits, and a backslash before a line break.
func (p *sexpParser) quoted() (sexp, error) {
	start := p.i
	p.i++
	out := []byte{}
	for p.i < len(p.b) {
		c := p.b[p.i]
		p.i++
		if c == '"' {
			return sBytes(out), nil
		}
		if c != '\\' {
			out = append(out, c)
			continue
		}
		if p.i >= len(p.b) {
			break
		}
		e := p.b[p.i]
		p.i++
		switch e {
		case 'b':
			out = append(out, '\b')
		case 't':
			out = append(out, '\t')
		case 'v':
			out = append(out, '\v')
		case 'n':
			out = append(out, '\n')
		case 'f':
			out = append(out, '\f')
		case 'r':
			out = append(out, '\r')
		case '"', '\'', '\\':
			out = append(out, e)
		case 'x':
			if p.i+2 > len(p.b) {
				return sexp{}, sexpErr("short \\x escape at byte %d", p.i)
			}
			v, err := hex.DecodeString(string(p.b[p.i : p.i+2]))
			if err != nil {
				return sexp{}, sexpErr("bad \\x escape at byte %d", p.i)
			}
			out = append(out, v[0])
			p.i += 2
		case '0', '1', '2', '3', '4', '5', '6', '7':
			if p.i+2 > len(p.b) {
				return sexp{}, sexpErr("short octal escape at byte %d", p.i)
			}
			v, err := strconv.ParseUint(string(p.b[p.i-1:p.i+2]), 8, 8)
			if err != nil {
				return sexp{}, sexpErr("bad octal escape at byte %d", p.i)
			}
			out = append(out, byte(v))
			p.i += 2
		case '\n', '\r':
			// Line continuation; a CR LF or LF CR pair counts as one.
			if p.i < len(p.b) && (p.b[p.i] == '\n' || p.b[p.i] == '\r') && p.b[p.i] != e {
				p.i++
			}
		default:
			return sexp{}, sexpErr("bad escape \\%c at byte %d", e, p.i-1)
		}
	}
	return sexp{}, sexpErr("unterminated string at byte %d", start)
}

// canonical prints the canonical form: "(" "N:bytes"... ")".
func (x sexp) canonical() []byte {
	var b []byte
	var walk func(sexp)
	walk = func(x sexp) {
		if !x.isList {
			b = strconv.AppendInt(b, int64(len(x.atom)), 10)
			b = append(b, ':')
			b = append(b, x.atom...)
			return
		}
		b = append(b, '(')
		for _, c := range x.list {
			walk(c)
		}
		b = append(b, ')')
	}
	walk(x)
	return b
}

// advanced prints x exactly as libgcrypt 1.10's gcry_sexp_sprint with
// GCRYSEXP_FMT_ADVANCED does (see testdata/guix/README.md §4 at the repository root).
func (x sexp) advanced() []byte {
	var b []byte
	depth := 0
	var walk func(x sexp, next *sexp)
	walk = func(x sexp, next *sexp) {
		if !x.isList {
			b = appendSexpAtom(b, x.atom)
			if next != nil {
				b = append(b, ' ')
			}
			return
		}
		if depth > 0 {
			b = append(b, '\n')
			b = append(b, bytes.Repeat([]byte{' '}, depth)...)
		}
		b = append(b, '(')
		depth++
		for i := range x.list {
			var n *sexp
			if i+1 < len(x.list) {
				n = &x.list[i+1]
			}
			walk(x.list[i], n)
		}
		b = append(b, ')')
		depth--
		// After ")": a line break unless a list or the end follows. The
		// end of an enclosing list counts as "not a list".
		if depth > 0 && (next == nil || !next.isList) {
			b = append(b, '\n')
			b = append(b, bytes.Repeat([]byte{' '}, depth)...)
		}
	}
	walk(x, nil)
	return append(b, '\n')
}

// sexpEncoding is libgcrypt's suitable_encoding: 0 hex, 1 quoted, 2 token.
func sexpEncoding(a []byte) int {
	if len(a) == 0 {
		return 1
	}
	if a[0]&0x80 != 0 || a[0] == 0 {
		return 0
	}
	token := true
	for _, c := range a {
		if (c < 0x20 || (c >= 0x7f && c <= 0xa0)) && !(c == 0 || (c >= 0x08 && c <= 0x0d) || c == '"' || c == '\'' || c == '\\') {
			return 0
		}
		if token && !isSexpTokenChar(c) {
			token = false
		}
	}
	if token && !isSexpDigit(a[0]) {
		return 2
	}
	return 1
}

func appendSexpAtom(b, a []byte) []byte {
	switch sexpEncoding(a) {
	case 2:
		return append(b, a...)
	case 0:
		b = append(b, '#')
		for _, c := range a {
			b = append(b, "0123456789ABCDEF"[c>>4], "0123456789ABCDEF"[c&15])
		}
		return append(b, '#')
	}
	b = append(b, '"')
	for _, c := range a {
		switch c {
		case '\b':
			b = append(b, '\\', 'b')
		case '\t':
			b = append(b, '\\', 't')
		case '\v':
			b = append(b, '\\', 'v')
		case '\n':
			b = append(b, '\\', 'n')
		case '\f':
			b = append(b, '\\', 'f')
		case '\r':
			b = append(b, '\\', 'r')
		case '"', '\'', '\\':
			b = append(b, '\\', c)
		default:
			if c < 0x20 || (c >= 0x7f && c <= 0xa0) {
				b = append(b, fmt.Sprintf("\\x%02x", c)...)
			} else {
				b = append(b, c)
			}
		}
	}
	return append(b, '"')
}
