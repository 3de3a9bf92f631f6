package store

import (
	"fmt"
	"strings"
)

// drvSpans are byte ranges of a parsed .drv: the outputs list content
// (between its brackets), the whole bracketed inputDrvs list, and each env
// value's quoted token, in file order.
type drvSpans struct {
	outputs [2]int
	inputs  [2]int
	envVals [][2]int
}

// ParseDerivation parses a .drv in the Nix "Derive(...)" ATerm form.
//
// It is strict: exact grammar with no whitespace, no trailing bytes, every
// sorted section strictly increasing (so no duplicates), store paths valid
// and all in one store dir, output tuples of a known kind, at most one
// output when one is fixed. Escaped strings (builder, args, env) decode as
// Nix decodes them: \n, \r and \t are control characters and a backslash
// before any other byte yields that byte. Fields Nix writes raw (names,
// paths, hashes, platform) must not contain a backslash. Errors wrap
// ErrBadDerivation.
func ParseDerivation(b []byte) (*Derivation, error) {
	d, err := parseDerivation(b)
	if err != nil {
		return nil, err
	}
	return d, nil
}

type drvParser struct {
	b []byte
	i int
}

func (p *drvParser) fail(format string, a ...any) error {
	return fmt.Errorf("%w: at byte %d: %s", ErrBadDerivation, p.i, fmt.Sprintf(format, a...))
}

func (p *drvParser) expect(s string) error {
	if !strings.HasPrefix(string(p.b[p.i:min(len(p.b), p.i+len(s))]), s) {
		return p.fail("expected %q", s)
	}
	p.i += len(s)
	return nil
}

func (p *drvParser) peek() int {
	if p.i < len(p.b) {
		return int(p.b[p.i])
	}
	return -1
}

// str reads a quoted string. Raw strings may not contain a backslash.
func (p *drvParser) str(escaped bool) (string, error) {
	if err := p.expect(`"`); err != nil {
		return "", err
	}
	start := p.i
	// Fast path: no backslash before the closing quote.
	for j := p.i; j < len(p.b); j++ {
		switch p.b[j] {
		case '"':
			p.i = j + 1
			return string(p.b[start:j]), nil
		case '\\':
			if !escaped {
				p.i = j
				return "", p.fail("backslash in an unescaped field")
			}
			return p.slowStr(start)
		}
	}
	p.i = len(p.b)
	return "", p.fail("unterminated string")
}

func (p *drvParser) slowStr(start int) (string, error) {
	var sb strings.Builder
	for j := start; j < len(p.b); j++ {
		c := p.b[j]
		switch c {
		case '"':
			p.i = j + 1
			return sb.String(), nil
		case '\\':
			j++
			if j == len(p.b) {
				p.i = j
				return "", p.fail("unterminated string")
			}
			switch e := p.b[j]; e {
			case 'n':
				sb.WriteByte('\n')
			case 'r':
				sb.WriteByte('\r')
			case 't':
				sb.WriteByte('\t')
			default:
				sb.WriteByte(e)
			}
		default:
			sb.WriteByte(c)
		}
	}
	p.i = len(p.b)
	return "", p.fail("unterminated string")
}

// list parses "[" item ("," item)* "]" or "[]".
func (p *drvParser) list(item func() error) error {
	if err := p.expect("["); err != nil {
		return err
	}
	if p.peek() == ']' {
		p.i++
		return nil
	}
	for {
		if err := item(); err != nil {
			return err
		}
		switch p.peek() {
		case ',':
			p.i++
		case ']':
			p.i++
			return nil
		default:
			return p.fail("expected ',' or ']'")
		}
	}
}

// strList parses a list of strings, checking strict byte order.
func (p *drvParser) strList(escaped, sorted bool, check func(string) error) ([]string, error) {
	var out []string
	err := p.list(func() error {
		s, err := p.str(escaped)
		if err != nil {
			return err
		}
		if sorted && len(out) > 0 && s <= out[len(out)-1] {
			return p.fail("%q is out of order or duplicated", s)
		}
		if check != nil {
			if err := check(s); err != nil {
				return p.fail("%v", err)
			}
		}
		out = append(out, s)
		return nil
	})
	return out, err
}

func parseDerivation(b []byte) (*Derivation, error) {
	p := &drvParser{b: b}
	d := &Derivation{InputDrvs: map[string][]string{}}
	sp := &drvSpans{}
	dir := ""
	checkPath := func(s string, drv bool) error {
		sp, err := ParseStorePath(dir, s)
		if err != nil {
			return err
		}
		dir = sp.Dir
		if drv && (!strings.HasSuffix(sp.Name, ".drv") || sp.Name == ".drv") {
			return fmt.Errorf("input %q is not a .drv", s)
		}
		return nil
	}
	checkName := func(s string) error {
		if err := CheckName(s); err != nil {
			return fmt.Errorf("output name: %w", err)
		}
		return nil
	}

	if err := p.expect("Derive("); err != nil {
		return nil, err
	}
	sp.outputs[0] = p.i + 1
	err := p.list(func() error {
		var o Output
		var err error
		if err = p.expect("("); err != nil {
			return err
		}
		if o.Name, err = p.str(false); err != nil {
			return err
		}
		if err := checkName(o.Name); err != nil {
			return p.fail("%v", err)
		}
		if n := len(d.Outputs); n > 0 && o.Name <= d.Outputs[n-1].Name {
			return p.fail("output %q is out of order or duplicated", o.Name)
		}
		for _, f := range []*string{&o.Path, &o.HashAlgo, &o.Hash} {
			if err = p.expect(","); err != nil {
				return err
			}
			if *f, err = p.str(false); err != nil {
				return err
			}
		}
		if err := p.expect(")"); err != nil {
			return err
		}
		if err := checkOutput(o, checkPath); err != nil {
			return p.fail("%v", err)
		}
		d.Outputs = append(d.Outputs, o)
		return nil
	})
	if err != nil {
		return nil, err
	}
	sp.outputs[1] = p.i - 1
	for _, o := range d.Outputs {
		if o.Kind() == OutputFixed && (len(d.Outputs) != 1 || o.Name != "out") {
			return nil, p.fail("a fixed output must be the only output, named out")
		}
	}

	if err := p.expect(","); err != nil {
		return nil, err
	}
	sp.inputs[0] = p.i
	last := ""
	err = p.list(func() error {
		if err := p.expect("("); err != nil {
			return err
		}
		dp, err := p.str(false)
		if err != nil {
			return err
		}
		if err := checkPath(dp, true); err != nil {
			return p.fail("%v", err)
		}
		if len(d.InputDrvs) > 0 && dp <= last {
			return p.fail("input %q is out of order or duplicated", dp)
		}
		last = dp
		if err := p.expect(","); err != nil {
			return err
		}
		outs, err := p.strList(false, true, checkName)
		if err != nil {
			return err
		}
		if outs == nil {
			outs = []string{}
		}
		d.InputDrvs[dp] = outs
		return p.expect(")")
	})
	if err != nil {
		return nil, err
	}
	sp.inputs[1] = p.i

	if err := p.expect(","); err != nil {
		return nil, err
	}
	if d.InputSrcs, err = p.strList(false, true, func(s string) error { return checkPath(s, false) }); err != nil {
		return nil, err
	}
	if err := p.expect(","); err != nil {
		return nil, err
	}
	if d.Platform, err = p.str(false); err != nil {
		return nil, err
	}
	if err := p.expect(","); err != nil {
		return nil, err
	}
	if d.Builder, err = p.str(true); err != nil {
		return nil, err
	}
	if err := p.expect(","); err != nil {
		return nil, err
	}
	if d.Args, err = p.strList(true, false, nil); err != nil {
		return nil, err
	}
	if err := p.expect(","); err != nil {
		return nil, err
	}
	err = p.list(func() error {
		var e EnvVar
		var err error
		if err = p.expect("("); err != nil {
			return err
		}
		if e.Key, err = p.str(true); err != nil {
			return err
		}
		if n := len(d.Env); n > 0 && e.Key <= d.Env[n-1].Key {
			return p.fail("env %q is out of order or duplicated", e.Key)
		}
		if err = p.expect(","); err != nil {
			return err
		}
		start := p.i
		if e.Value, err = p.str(true); err != nil {
			return err
		}
		sp.envVals = append(sp.envVals, [2]int{start, p.i})
		d.Env = append(d.Env, e)
		return p.expect(")")
	})
	if err != nil {
		return nil, err
	}
	if err := p.expect(")"); err != nil {
		return nil, err
	}
	if p.i != len(b) {
		return nil, p.fail("%d trailing bytes", len(b)-p.i)
	}
	d.src, d.spans = append([]byte(nil), b...), sp
	return d, nil
}

// checkOutput validates one output tuple: a known kind, a valid path for
// input-addressed and fixed outputs, a known algorithm and a digest of the
// right length.
func checkOutput(o Output, checkPath func(string, bool) error) error {
	if o.Path != "" {
		if err := checkPath(o.Path, false); err != nil {
			return err
		}
	}
	if o.HashAlgo == "" {
		if o.Hash != "" {
			return fmt.Errorf("output %q has a hash but no algorithm", o.Name)
		}
		return nil
	}
	algo := strings.TrimPrefix(o.HashAlgo, "r:")
	if _, err := ParseHashAlgo(algo); err != nil {
		return fmt.Errorf("output %q: %v", o.Name, err)
	}
	switch o.Kind() {
	case OutputFixed:
		if o.Path == "" {
			return fmt.Errorf("fixed output %q has no path", o.Name)
		}
		if _, _, err := o.FixedHash(); err != nil {
			return err
		}
	case OutputFloating, OutputImpure:
		if o.Path != "" {
			return fmt.Errorf("output %q has a path but no expected hash", o.Name)
		}
	}
	return nil
}
