package store

import (
	"bytes"
	"fmt"
	"path"
	"sort"
	"strings"
)

// Derivation is a parsed .drv in Nix's ATerm form.
//
// Strings are byte strings: they hold whatever bytes the file decodes to,
// not necessarily UTF-8. Outputs, InputDrvs keys and each InputDrvs list,
// InputSrcs and Env are sorted by byte value without duplicates, as Nix and
// Guix write them; ParseDerivation rejects a file that is not, so ATerm
// reproduces every file Nix writes byte for byte.
type Derivation struct {
	Outputs   []Output            // sorted by Name
	InputDrvs map[string][]string // .drv path → sorted output names
	InputSrcs []string            // sorted store paths
	Platform  string
	Builder   string
	Args      []string
	Env       []EnvVar // sorted by Key

	// src and spans remember where the parsed file's sections are, so that
	// hashing masks and replaces in the file's own bytes (see modulo.go).
	src   []byte
	spans *drvSpans
}

// Output is one output tuple. Path, HashAlgo and Hash are as in the file:
// HashAlgo is "" or "[r:]algo", Hash "" or the expected digest (hex as Nix
// writes it).
type Output struct {
	Name     string
	Path     string
	HashAlgo string
	Hash     string
}

// EnvVar is one environment variable.
type EnvVar struct {
	Key   string
	Value string
}

// OutputKind tells how an output's path is determined.
type OutputKind int

// The output kinds of §1.4 of docs/formats.md.
const (
	OutputInputAddressed OutputKind = iota // path from hashDerivationModulo
	OutputFixed                            // path from the expected hash
	OutputFloating                         // content-addressed, path after build (experimental)
	OutputDeferred                         // path not yet known (experimental)
	OutputImpure                           // impure (experimental)
)

// Kind classifies the output tuple.
func (o Output) Kind() OutputKind {
	switch {
	case o.HashAlgo == "" && o.Path != "":
		return OutputInputAddressed
	case o.HashAlgo == "":
		return OutputDeferred
	case o.Hash == "impure":
		return OutputImpure
	case o.Hash == "":
		return OutputFloating
	}
	return OutputFixed
}

// FixedHash returns the expected hash of a fixed output and whether it is
// recursive (NAR) or flat.
func (o Output) FixedHash() (h Hash, recursive bool, err error) {
	if o.Kind() != OutputFixed {
		return Hash{}, false, fmt.Errorf("%w: output %q is not fixed", ErrBadDerivation, o.Name)
	}
	algo := o.HashAlgo
	if strings.HasPrefix(algo, "r:") {
		recursive, algo = true, algo[2:]
	}
	h, err = ParseHashAs(algo, o.Hash)
	if err != nil {
		return Hash{}, false, fmt.Errorf("%w: output %q: %w", ErrBadDerivation, o.Name, err)
	}
	return h, recursive, nil
}

// IsFixedOutput reports whether d is a fixed-output derivation: its only
// output is "out" with an expected hash.
func (d *Derivation) IsFixedOutput() bool {
	return len(d.Outputs) == 1 && d.Outputs[0].Name == "out" && d.Outputs[0].Kind() == OutputFixed
}

// OutputNames lists the output names, sorted.
func (d *Derivation) OutputNames() []string {
	names := make([]string, len(d.Outputs))
	for i, o := range d.Outputs {
		names[i] = o.Name
	}
	return names
}

// Output returns the output named name.
func (d *Derivation) Output(name string) (Output, bool) {
	i := sort.Search(len(d.Outputs), func(i int) bool { return d.Outputs[i].Name >= name })
	if i < len(d.Outputs) && d.Outputs[i].Name == name {
		return d.Outputs[i], true
	}
	return Output{}, false
}

// Getenv returns the value of the environment variable key.
func (d *Derivation) Getenv(key string) (string, bool) {
	i := sort.Search(len(d.Env), func(i int) bool { return d.Env[i].Key >= key })
	if i < len(d.Env) && d.Env[i].Key == key {
		return d.Env[i].Value, true
	}
	return "", false
}

// InputDrvPaths lists the input .drv paths, sorted.
func (d *Derivation) InputDrvPaths() []string {
	ps := make([]string, 0, len(d.InputDrvs))
	for p := range d.InputDrvs {
		ps = append(ps, p)
	}
	sort.Strings(ps)
	return ps
}

// References are the store references of the .drv file itself: every input
// .drv and every input source, sorted. Outputs are never references.
func (d *Derivation) References() []string {
	refs := append(d.InputDrvPaths(), d.InputSrcs...)
	sort.Strings(refs)
	return refs
}

// StoreDir is the directory of the derivation's store paths (outputs,
// inputs, sources), or "" if it names none. ParseDerivation checks they
// all agree.
func (d *Derivation) StoreDir() string {
	for _, o := range d.Outputs {
		if o.Path != "" {
			return path.Dir(o.Path)
		}
	}
	for _, p := range d.InputDrvPaths() {
		return path.Dir(p)
	}
	for _, p := range d.InputSrcs {
		return path.Dir(p)
	}
	return ""
}

// DrvName is the derivation name of a .drv path or base name: the file
// name without its hash part and ".drv" suffix.
func DrvName(drvPath string) (string, error) {
	base := drvPath[strings.LastIndexByte(drvPath, '/')+1:]
	_, name, err := ParseStorePathBase(base)
	if err != nil {
		return "", err
	}
	if !strings.HasSuffix(name, ".drv") || len(name) == len(".drv") {
		return "", fmt.Errorf("%w: %q is not a .drv", ErrBadStorePath, drvPath)
	}
	return strings.TrimSuffix(name, ".drv"), nil
}

// ATerm prints d exactly as Nix 2.8 writes a .drv: sorted sections, no
// whitespace, builder, args and env escaped (\" \\ \n \r \t; every other
// byte raw), the other fields raw.
func (d *Derivation) ATerm() []byte {
	return d.aterm(d.Outputs, d.InputDrvs, nil)
}

// aterm prints d with the given outputs and input drvs; maskEnv names env
// keys whose values print as "".
func (d *Derivation) aterm(outputs []Output, inputs map[string][]string, maskEnv map[string]bool) []byte {
	var b bytes.Buffer
	b.Grow(len(d.src) + 256)
	b.WriteString("Derive([")
	for i, o := range outputs {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('(')
		rawString(&b, o.Name)
		b.WriteByte(',')
		rawString(&b, o.Path)
		b.WriteByte(',')
		rawString(&b, o.HashAlgo)
		b.WriteByte(',')
		rawString(&b, o.Hash)
		b.WriteByte(')')
	}
	b.WriteString("],")
	writeInputDrvs(&b, inputs)
	b.WriteString(",[")
	for i, s := range d.InputSrcs {
		if i > 0 {
			b.WriteByte(',')
		}
		rawString(&b, s)
	}
	b.WriteString("],")
	rawString(&b, d.Platform)
	b.WriteByte(',')
	escString(&b, d.Builder)
	b.WriteString(",[")
	for i, a := range d.Args {
		if i > 0 {
			b.WriteByte(',')
		}
		escString(&b, a)
	}
	b.WriteString("],[")
	for i, e := range d.Env {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('(')
		escString(&b, e.Key)
		b.WriteByte(',')
		if maskEnv[e.Key] {
			b.WriteString(`""`)
		} else {
			escString(&b, e.Value)
		}
		b.WriteByte(')')
	}
	b.WriteString("])")
	return b.Bytes()
}

// writeInputDrvs prints the bracketed inputDrvs list, keys sorted.
func writeInputDrvs(b *bytes.Buffer, inputs map[string][]string) {
	keys := make([]string, 0, len(inputs))
	for k := range inputs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	b.WriteByte('[')
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('(')
		rawString(b, k)
		b.WriteString(",[")
		for j, o := range inputs[k] {
			if j > 0 {
				b.WriteByte(',')
			}
			rawString(b, o)
		}
		b.WriteString("])")
	}
	b.WriteByte(']')
}

func rawString(b *bytes.Buffer, s string) {
	b.WriteByte('"')
	b.WriteString(s)
	b.WriteByte('"')
}

func escString(b *bytes.Buffer, s string) {
	b.WriteByte('"')
	start := 0
	for i := 0; i < len(s); i++ {
		var esc string
		switch s[i] {
		case '"':
			esc = `\"`
		case '\\':
			esc = `\\`
		case '\n':
			esc = `\n`
		case '\r':
			esc = `\r`
		case '\t':
			esc = `\t`
		default:
			continue
		}
		b.WriteString(s[start:i])
		b.WriteString(esc)
		start = i + 1
	}
	b.WriteString(s[start:])
	b.WriteByte('"')
}
