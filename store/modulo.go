package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
)

// Loader returns the original bytes of the .drv at drvPath. Hashing uses
// those bytes as they are and never a re-serialisation, so a .drv written
// by another writer (Guix escapes control bytes differently) hashes as its
// writer hashed it.
type Loader func(drvPath string) ([]byte, error)

// DirLoader reads a .drv by its base name from the first of dirs that has
// it. With no dirs, or when none has it, it reads drvPath itself.
func DirLoader(dirs ...string) Loader {
	return func(drvPath string) ([]byte, error) {
		base := filepath.Base(drvPath)
		for _, dir := range dirs {
			b, err := os.ReadFile(filepath.Join(dir, base))
			if err == nil {
				return b, nil
			}
			if !errors.Is(err, fs.ErrNotExist) {
				return nil, err
			}
		}
		return os.ReadFile(drvPath)
	}
}

// Hasher computes hashDerivationModulo (docs/formats.md §2.3), memoised per .drv
// path. It is safe for concurrent use; the loader is called with the
// Hasher's lock held, at most once per path that hashes successfully.
type Hasher struct {
	load Loader
	mu   sync.Mutex
	memo map[string][32]byte
}

// NewHasher returns a Hasher that reads input .drvs with load.
func NewHasher(load Loader) *Hasher {
	return &Hasher{load: load, memo: map[string][32]byte{}}
}

// Modulo is hashDerivationModulo of the .drv at drvPath, unmasked: for a
// fixed-output derivation sha256("fixed:out:[r:]algo:hex:outPath"); for
// one without inputs sha256 of its bytes; otherwise sha256 of its bytes
// with each input .drv path replaced by the hex of its own modulo hash.
// A fixed-output input whose path is not the one its hash implies is an
// ErrBadDerivation.
func (h *Hasher) Modulo(drvPath string) ([32]byte, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.modulo(drvPath, map[string]bool{})
}

func (h *Hasher) modulo(p string, visiting map[string]bool) ([32]byte, error) {
	if v, ok := h.memo[p]; ok {
		return v, nil
	}
	if visiting[p] {
		return [32]byte{}, fmt.Errorf("%w: %s depends on itself", ErrBadDerivation, p)
	}
	visiting[p] = true
	defer delete(visiting, p)
	b, err := h.load(p)
	if err != nil {
		return [32]byte{}, fmt.Errorf("load %s: %w", p, err)
	}
	d, err := parseDerivation(b)
	if err != nil {
		return [32]byte{}, fmt.Errorf("%s: %w", p, err)
	}
	if d.IsFixedOutput() {
		// Nix hashes the path the expected hash implies; the file's must be it.
		if err := checkFixed(d, p); err != nil {
			return [32]byte{}, err
		}
	}
	sum, err := h.hashDrv(d, false, true, visiting)
	if err != nil {
		return [32]byte{}, err
	}
	h.memo[p] = sum
	return sum, nil
}

func checkFixed(d *Derivation, drvPath string) error {
	sp, err := ParseStorePath("", drvPath)
	if err != nil {
		return fmt.Errorf("%w: input %s: %w", ErrBadDerivation, drvPath, err)
	}
	name, err := DrvName(drvPath)
	if err != nil {
		return fmt.Errorf("%w: input %s: %w", ErrBadDerivation, drvPath, err)
	}
	o := d.Outputs[0]
	fh, rec, err := o.FixedHash()
	if err != nil {
		return fmt.Errorf("input %s: %w", drvPath, err)
	}
	if want := MakeFixedOutputPath(sp.Dir, name, rec, fh, nil); o.Path != want {
		return fmt.Errorf("%w: input %s: fixed output has path %s, should be %s", ErrBadDerivation, drvPath, o.Path, want)
	}
	return nil
}

// hashDrv is hashDerivationModulo of d. mask blanks the output tuples and
// the env vars named after outputs; spliced edits d's own bytes instead of
// printing it.
func (h *Hasher) hashDrv(d *Derivation, mask, spliced bool, visiting map[string]bool) ([32]byte, error) {
	if !mask && d.IsFixedOutput() {
		o := d.Outputs[0]
		fh, _, err := o.FixedHash()
		if err != nil {
			return [32]byte{}, err
		}
		return sha256.Sum256([]byte("fixed:out:" + o.HashAlgo + ":" + fh.Hex() + ":" + o.Path)), nil
	}
	if !mask && spliced && len(d.InputDrvs) == 0 {
		return sha256.Sum256(d.src), nil
	}
	inputs := make(map[string][]string, len(d.InputDrvs))
	for _, p := range d.InputDrvPaths() {
		m, err := h.modulo(p, visiting)
		if err != nil {
			return [32]byte{}, err
		}
		key := hex.EncodeToString(m[:])
		inputs[key] = unionSorted(inputs[key], d.InputDrvs[p])
	}
	if spliced {
		return sha256.Sum256(d.splice(inputs, mask)), nil
	}
	var outs []Output
	var maskEnv map[string]bool
	if mask {
		maskEnv = map[string]bool{}
		for _, o := range d.Outputs {
			outs = append(outs, Output{Name: o.Name})
			maskEnv[o.Name] = true
		}
	} else {
		outs = d.Outputs
	}
	return sha256.Sum256(d.aterm(outs, inputs, maskEnv)), nil
}

// unionSorted merges two sorted string sets. Two inputs share a modulo
// hash only when both are fixed-output derivations of the same output, so
// in practice this is {out} ∪ {out}.
func unionSorted(a, b []string) []string {
	if a == nil {
		return b
	}
	seen := map[string]bool{}
	var out []string
	for _, s := range append(append([]string(nil), a...), b...) {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out
}

// splice returns d's original bytes with the inputDrvs list replaced by
// inputs and, if mask, the outputs and the env values of outputs blanked.
func (d *Derivation) splice(inputs map[string][]string, mask bool) []byte {
	type edit struct {
		start, end int
		with       []byte
	}
	var edits []edit
	sp := d.spans
	if mask {
		var ob bytes.Buffer
		for i, o := range d.Outputs {
			if i > 0 {
				ob.WriteByte(',')
			}
			ob.WriteString(`("` + o.Name + `","","","")`)
		}
		edits = append(edits, edit{sp.outputs[0], sp.outputs[1], ob.Bytes()})
	}
	var ib bytes.Buffer
	writeInputDrvs(&ib, inputs)
	edits = append(edits, edit{sp.inputs[0], sp.inputs[1], ib.Bytes()})
	if mask {
		for i, e := range d.Env {
			if _, ok := d.Output(e.Key); ok {
				edits = append(edits, edit{sp.envVals[i][0], sp.envVals[i][1], []byte(`""`)})
			}
		}
	}
	out := make([]byte, 0, len(d.src)+ib.Len())
	at := 0
	for _, e := range edits {
		out = append(out, d.src[at:e.start]...)
		out = append(out, e.with...)
		at = e.end
	}
	return append(out, d.src[at:]...)
}

// unmodified reports whether d still holds exactly what its remembered
// bytes parse to, so that editing those bytes is valid.
func (d *Derivation) unmodified() bool {
	if d.src == nil || d.spans == nil {
		return false
	}
	again, err := parseDerivation(d.src)
	if err != nil {
		return false
	}
	return reflect.DeepEqual(exported(again), exported(d))
}

func exported(d *Derivation) Derivation {
	c := *d
	c.src, c.spans = nil, nil
	if len(c.InputDrvs) == 0 {
		c.InputDrvs = nil
	}
	return c
}

// OutputPaths computes the path every output of d must have, for a
// derivation named drvName in storeDir: fixed outputs from their expected
// hash, input-addressed ones from the masked modulo hash. A deferred
// output ("name","","","") gets its input-addressed path, as when Nix
// creates a derivation. Floating and impure outputs (experimental in Nix
// 2.8) are rejected.
func (h *Hasher) OutputPaths(d *Derivation, storeDir, drvName string) (map[string]string, error) {
	if err := CheckName(drvName); err != nil {
		return nil, fmt.Errorf("%w: derivation name: %w", ErrBadDerivation, err)
	}
	if len(d.Outputs) == 0 {
		return nil, fmt.Errorf("%w: no outputs", ErrBadDerivation)
	}
	paths := make(map[string]string, len(d.Outputs))
	var masked *[32]byte
	for _, o := range d.Outputs {
		if err := CheckName(OutputPathName(drvName, o.Name)); err != nil {
			return nil, fmt.Errorf("%w: output %q: %w", ErrBadDerivation, o.Name, err)
		}
		switch o.Kind() {
		case OutputFixed:
			if !d.IsFixedOutput() {
				return nil, fmt.Errorf("%w: fixed output %q is not the only output", ErrBadDerivation, o.Name)
			}
			fh, rec, err := o.FixedHash()
			if err != nil {
				return nil, err
			}
			paths[o.Name] = MakeFixedOutputPath(storeDir, drvName, rec, fh, nil)
		case OutputInputAddressed, OutputDeferred:
			if masked == nil {
				h.mu.Lock()
				sum, err := h.hashDrv(d, true, d.unmodified(), map[string]bool{})
				h.mu.Unlock()
				if err != nil {
					return nil, err
				}
				masked = &sum
			}
			paths[o.Name] = MakeOutputPath(storeDir, o.Name, SHA256Hash(*masked), drvName)
		default:
			return nil, fmt.Errorf("%w: output %q is not input-addressed or fixed (unsupported experimental kind)", ErrBadDerivation, o.Name)
		}
	}
	return paths, nil
}

// CheckOutputPaths recomputes every output path of d and checks it against
// the file and against the env var named after the output. The error
// wraps ErrBadDerivation and names the first wrong output; a failure to
// load an input .drv is returned as it is.
func (h *Hasher) CheckOutputPaths(d *Derivation, storeDir, drvName string) error {
	paths, err := h.OutputPaths(d, storeDir, drvName)
	if err != nil {
		return err
	}
	for _, o := range d.Outputs {
		want := paths[o.Name]
		if o.Path != want {
			return fmt.Errorf("%w: output %q has path %s, should be %s", ErrBadDerivation, o.Name, o.Path, want)
		}
		if v, ok := d.Getenv(o.Name); !ok || v != want {
			return fmt.Errorf("%w: env var %q of output %q is %q, should be %s", ErrBadDerivation, o.Name, o.Name, v, want)
		}
	}
	return nil
}

// FillOutputPaths sets the path of every output of a new derivation, and
// the env var named after each output, as Nix does when it writes a .drv
// (docs/formats.md §2.3). Outputs are given as ("name","","","") or, for a
// fixed output, ("out","","[r:]algo","hex"). Env must be sorted; output
// env vars are added if missing.
func (h *Hasher) FillOutputPaths(d *Derivation, storeDir, drvName string) error {
	// Nix sets every output's env var before hashing (masked to "").
	d.src, d.spans = nil, nil
	for _, o := range d.Outputs {
		d.setenv(o.Name, "")
	}
	paths, err := h.OutputPaths(d, storeDir, drvName)
	if err != nil {
		return err
	}
	for i := range d.Outputs {
		d.Outputs[i].Path = paths[d.Outputs[i].Name]
		d.setenv(d.Outputs[i].Name, paths[d.Outputs[i].Name])
	}
	return nil
}

// setenv sets key, keeping Env sorted.
func (d *Derivation) setenv(key, value string) {
	i := sort.Search(len(d.Env), func(i int) bool { return d.Env[i].Key >= key })
	if i < len(d.Env) && d.Env[i].Key == key {
		d.Env[i].Value = value
		return
	}
	d.Env = slices.Insert(d.Env, i, EnvVar{Key: key, Value: value})
}

// CheckOutputPaths is Hasher.CheckOutputPaths with a fresh Hasher: input
// .drvs are read with load.
func (d *Derivation) CheckOutputPaths(storeDir, drvName string, load Loader) error {
	return NewHasher(load).CheckOutputPaths(d, storeDir, drvName)
}

// DrvClosure walks the .drv graph from rootDrvPath. drvs lists every .drv
// of the closure, the root included and last, in dependency order: each
// .drv comes after all its inputs; siblings come in path order. srcs is the
// sorted set of input sources of all of them. Each .drv is loaded once.
func DrvClosure(rootDrvPath string, load Loader) (drvs, srcs []string, err error) {
	done := map[string]bool{}
	visiting := map[string]bool{}
	srcSet := map[string]bool{}
	var visit func(p string) error
	visit = func(p string) error {
		if done[p] {
			return nil
		}
		if visiting[p] {
			return fmt.Errorf("%w: %s depends on itself", ErrBadDerivation, p)
		}
		visiting[p] = true
		b, err := load(p)
		if err != nil {
			return fmt.Errorf("load %s: %w", p, err)
		}
		d, err := parseDerivation(b)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		for _, in := range d.InputDrvPaths() {
			if err := visit(in); err != nil {
				return err
			}
		}
		for _, s := range d.InputSrcs {
			srcSet[s] = true
		}
		delete(visiting, p)
		done[p] = true
		drvs = append(drvs, p)
		return nil
	}
	if !strings.HasSuffix(rootDrvPath, ".drv") {
		return nil, nil, fmt.Errorf("%w: %q is not a .drv", ErrBadStorePath, rootDrvPath)
	}
	if err := visit(rootDrvPath); err != nil {
		return nil, nil, err
	}
	for s := range srcSet {
		srcs = append(srcs, s)
	}
	sort.Strings(srcs)
	return drvs, srcs, nil
}
