package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/drvmesh/drvmesh/store"
)

func init() {
	register("drv show", "FILE.drv [--drv-dir DIR] [--store-dir DIR] [--json]: parse a derivation, check its output paths, print it", runDrvShow)
}

// drvJSON is one derivation as nix show-derivation (Nix 2.8) prints it.
type drvJSON struct {
	Outputs   map[string]drvOutputJSON `json:"outputs"`
	InputSrcs []string                 `json:"inputSrcs"`
	InputDrvs map[string][]string      `json:"inputDrvs"`
	System    string                   `json:"system"`
	Builder   string                   `json:"builder"`
	Args      []string                 `json:"args"`
	Env       map[string]string        `json:"env"`
}

type drvOutputJSON struct {
	Path     string `json:"path,omitempty"`
	HashAlgo string `json:"hashAlgo,omitempty"`
	Hash     string `json:"hash,omitempty"`
}

func runDrvShow(args []string) error { return drvShow(os.Stdout, args) }

func drvShow(w io.Writer, args []string) error {
	fs := newFlags("drv show")
	drvDir := fs.String("drv-dir", "", "read input .drv files from DIR by base name")
	storeDir := fs.String("store-dir", "", "the store dir of the derivation (default: the file's directory, else the one its paths name)")
	asJSON := fs.Bool("json", false, "print JSON like nix show-derivation")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageErr("drv show takes one .drv file")
	}
	file := pos[0]
	b, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("%w: read %s: %v", errFailed, file, err)
	}
	d, err := store.ParseDerivation(b)
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	name, err := store.DrvName(file)
	if err != nil {
		return err
	}
	dir := *storeDir
	if dir == "" {
		dir = inferStoreDir(file, d)
	}
	drvPath := dir + "/" + filepath.Base(file)
	if _, err := store.ParseStorePath(dir, drvPath); err != nil {
		return err
	}
	load := showLoader(*drvDir, filepath.Dir(file))
	if err := d.CheckOutputPaths(dir, name, load); err != nil {
		if errors.Is(err, store.ErrBadDerivation) {
			return fmt.Errorf("%s: %w", drvPath, err)
		}
		return fmt.Errorf("%w: %s: %v", errFailed, drvPath, err)
	}
	if *asJSON {
		return writeDrvJSON(w, drvPath, d)
	}
	writeDrvText(w, drvPath, d)
	return nil
}

// inferStoreDir is the file's own directory when the derivation's paths
// live there, else the directory its paths name (a copy of a .drv outside
// the store), else the file's directory.
func inferStoreDir(file string, d *store.Derivation) string {
	own, err := filepath.Abs(filepath.Dir(file))
	if err != nil {
		own = filepath.Dir(file)
	}
	if sd := d.StoreDir(); sd != "" && sd != own {
		return sd
	}
	return own
}

// showLoader reads an input .drv from drvDir by base name, else from its
// store path, else from fileDir (next to the shown file) by base name.
func showLoader(drvDir, fileDir string) store.Loader {
	return func(p string) ([]byte, error) {
		base := filepath.Base(p)
		var cands, tried []string
		if drvDir != "" {
			cands = append(cands, filepath.Join(drvDir, base))
		}
		cands = append(cands, p, filepath.Join(fileDir, base))
		for _, cand := range cands {
			b, err := os.ReadFile(cand)
			if err == nil {
				return b, nil
			}
			if !errors.Is(err, fs.ErrNotExist) {
				return nil, err
			}
			tried = append(tried, cand)
		}
		return nil, fmt.Errorf("input %s not found (tried %s)", p, strings.Join(tried, ", "))
	}
}

func writeDrvJSON(w io.Writer, drvPath string, d *store.Derivation) error {
	j := drvJSON{
		Outputs:   map[string]drvOutputJSON{},
		InputSrcs: append([]string{}, d.InputSrcs...),
		InputDrvs: map[string][]string{},
		System:    d.Platform,
		Builder:   d.Builder,
		Args:      append([]string{}, d.Args...),
		Env:       map[string]string{},
	}
	for _, o := range d.Outputs {
		oj := drvOutputJSON{Path: o.Path, HashAlgo: o.HashAlgo}
		if o.Kind() == store.OutputFixed {
			h, _, err := o.FixedHash()
			if err != nil {
				return err
			}
			oj.Hash = h.Hex()
		}
		j.Outputs[o.Name] = oj
	}
	for p, outs := range d.InputDrvs {
		j.InputDrvs[p] = outs
	}
	for _, e := range d.Env {
		j.Env[e.Key] = e.Value
	}
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(map[string]drvJSON{drvPath: j}); err != nil {
		return fmt.Errorf("%w: write: %v", errFailed, err)
	}
	return nil
}

func writeDrvText(w io.Writer, drvPath string, d *store.Derivation) {
	fmt.Fprintf(w, "%s (output paths ok)\n", drvPath)
	fmt.Fprintf(w, "  system:  %s\n  builder: %q\n  args:   ", d.Platform, d.Builder)
	for _, a := range d.Args {
		fmt.Fprintf(w, " %q", a)
	}
	fmt.Fprintln(w, "\n  outputs:")
	for _, o := range d.Outputs {
		fmt.Fprintf(w, "    %-8s %s", o.Name, o.Path)
		if o.HashAlgo != "" {
			fmt.Fprintf(w, " (%s %s)", o.HashAlgo, o.Hash)
		}
		fmt.Fprintln(w)
	}
	if len(d.InputDrvs) > 0 {
		fmt.Fprintln(w, "  input derivations:")
		for _, p := range d.InputDrvPaths() {
			fmt.Fprintf(w, "    %s (%s)\n", p, strings.Join(d.InputDrvs[p], ","))
		}
	}
	if len(d.InputSrcs) > 0 {
		fmt.Fprintln(w, "  input sources:")
		for _, s := range d.InputSrcs {
			fmt.Fprintf(w, "    %s\n", s)
		}
	}
	fmt.Fprintln(w, "  env:")
	for _, e := range d.Env {
		fmt.Fprintf(w, "    %s=%q\n", e.Key, e.Value)
	}
}
