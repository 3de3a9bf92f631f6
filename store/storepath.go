package store

import (
	"crypto/sha256"
	"fmt"
	"sort"
	"strings"
)

// StorePathHashLen is the length of the nix32 hash part of a store path
// (160 bits).
const StorePathHashLen = 32

// MaxStorePathNameLen is the longest name Nix 2.8 accepts.
const MaxStorePathNameLen = 211

// StorePath is a parsed store path: Dir + "/" + Hash + "-" + Name.
type StorePath struct {
	Dir  string // the store dir, e.g. /nix/store or /gnu/store, no trailing slash
	Hash string // the 32 nix32 characters
	Name string // the name after the dash
}

// String is the full path.
func (p StorePath) String() string { return p.Dir + "/" + p.Base() }

// Base is the path's last component, "hash-name".
func (p StorePath) Base() string { return p.Hash + "-" + p.Name }

// ParseStorePath parses and validates a store path under storeDir. An empty
// storeDir accepts any absolute store dir (everything before the last
// slash). The hash part must be 32 nix32 characters and the name 1 to 211
// characters of [A-Za-z0-9+-._?=].
func ParseStorePath(storeDir, s string) (StorePath, error) {
	i := strings.LastIndexByte(s, '/')
	if i < 0 {
		return StorePath{}, fmt.Errorf("%w: %q is not absolute", ErrBadStorePath, s)
	}
	dir, base := s[:i], s[i+1:]
	if storeDir != "" && dir != storeDir {
		return StorePath{}, fmt.Errorf("%w: %q is not in %s", ErrBadStorePath, s, storeDir)
	}
	if err := checkStoreDir(dir); err != nil {
		return StorePath{}, fmt.Errorf("%w: %q: %v", ErrBadStorePath, s, err)
	}
	hash, name, err := splitBase(base)
	if err != nil {
		return StorePath{}, fmt.Errorf("%w: %q: %v", ErrBadStorePath, s, err)
	}
	return StorePath{Dir: dir, Hash: hash, Name: name}, nil
}

// ParseStorePathBase parses a base name "hash-name" without a directory.
func ParseStorePathBase(base string) (hash, name string, err error) {
	hash, name, err = splitBase(base)
	if err != nil {
		return "", "", fmt.Errorf("%w: %q: %v", ErrBadStorePath, base, err)
	}
	return hash, name, nil
}

func checkStoreDir(dir string) error {
	switch {
	case dir == "":
		return fmt.Errorf("empty store dir")
	case dir[0] != '/':
		return fmt.Errorf("store dir %q is not absolute", dir)
	case strings.HasSuffix(dir, "/"), strings.Contains(dir, "//"),
		strings.Contains(dir+"/", "/./"), strings.Contains(dir+"/", "/../"):
		return fmt.Errorf("store dir %q is not canonical", dir)
	}
	return nil
}

func splitBase(base string) (hash, name string, err error) {
	if len(base) < StorePathHashLen+2 || base[StorePathHashLen] != '-' {
		return "", "", fmt.Errorf("base name %q is not hash-name", base)
	}
	hash, name = base[:StorePathHashLen], base[StorePathHashLen+1:]
	for i := 0; i < len(hash); i++ {
		if nix32Index[hash[i]] < 0 {
			return "", "", fmt.Errorf("hash part %q is not nix32", hash)
		}
	}
	if err := CheckName(name); err != nil {
		return "", "", err
	}
	return hash, name, nil
}

// CheckName reports whether name is a valid store path name: 1 to 211
// characters of [A-Za-z0-9+-._?=]. The error does not wrap a sentinel;
// callers wrap it.
func CheckName(name string) error {
	if len(name) == 0 {
		return fmt.Errorf("empty name")
	}
	if len(name) > MaxStorePathNameLen {
		return fmt.Errorf("name is %d characters, over %d", len(name), MaxStorePathNameLen)
	}
	for i := 0; i < len(name); i++ {
		if !nameChar(name[i]) {
			return fmt.Errorf("name %q has invalid character %q", name, name[i])
		}
	}
	return nil
}

func nameChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("+-._?=", c) >= 0
}

// HashPart returns the 32-character hash part of a store path (full or
// base name), or "" if path has no such part.
func HashPart(path string) string {
	base := path[strings.LastIndexByte(path, '/')+1:]
	if len(base) < StorePathHashLen+1 || base[StorePathHashLen] != '-' {
		return ""
	}
	return base[:StorePathHashLen]
}

// MakeStorePath computes a store path the way Nix's makeStorePath does:
// sha256 of "typ:algo:hex(inner):storeDir:name", XOR-folded to 20 bytes,
// in nix32. typ is e.g. "text:/nix/store/…-ref", "source", "output:out".
func MakeStorePath(storeDir, typ string, inner Hash, name string) string {
	fp := typ + ":" + string(inner.Algo) + ":" + inner.Hex() + ":" + storeDir + ":" + name
	sum := sha256.Sum256([]byte(fp))
	return storeDir + "/" + EncodeNix32(CompressHash(sum[:], 20)) + "-" + name
}

// makeType appends ":ref" for each reference, sorted, and ":self".
func makeType(typ string, refs []string, self bool) string {
	rs := append([]string(nil), refs...)
	sort.Strings(rs)
	var b strings.Builder
	b.WriteString(typ)
	for i, r := range rs {
		if i > 0 && r == rs[i-1] {
			continue
		}
		b.WriteString(":")
		b.WriteString(r)
	}
	if self {
		b.WriteString(":self")
	}
	return b.String()
}

// MakeTextPath is the path of a text file added with its references (full
// paths), as Nix stores .drv files: type "text:<refs>", inner hash the
// sha256 of content.
func MakeTextPath(storeDir, name string, content []byte, refs []string) string {
	sum := sha256.Sum256(content)
	return MakeStorePath(storeDir, makeType("text", refs, false), SHA256Hash(sum), name)
}

// MakeSourcePath is the path of content added by NAR hash (nix-store --add,
// recursive sha256 fixed outputs): type "source" with references and
// optionally a self reference.
func MakeSourcePath(storeDir, name string, narHash Hash, refs []string, self bool) string {
	return MakeStorePath(storeDir, makeType("source", refs, self), narHash, name)
}

// MakeFixedOutputPath is the path of a fixed output. A recursive sha256
// hash gives a "source" path (refs allowed); every other case gives an
// "output:out" path whose inner hash is sha256 of
// "fixed:out:[r:]algo:hex:" (refs must then be empty and are ignored).
func MakeFixedOutputPath(storeDir, name string, recursive bool, h Hash, refs []string) string {
	if recursive && h.Algo == SHA256 {
		return MakeSourcePath(storeDir, name, h, refs, false)
	}
	return MakeStorePath(storeDir, "output:out", fixedOutputInner(recursive, h), name)
}

func fixedOutputInner(recursive bool, h Hash) Hash {
	prefix := ""
	if recursive {
		prefix = "r:"
	}
	sum := sha256.Sum256([]byte("fixed:out:" + prefix + string(h.Algo) + ":" + h.Hex() + ":"))
	return SHA256Hash(sum)
}

// OutputPathName is the store path name of output id of derivation
// drvName: drvName for "out", drvName-id otherwise.
func OutputPathName(drvName, id string) string {
	if id == "out" {
		return drvName
	}
	return drvName + "-" + id
}

// MakeOutputPath is the path of input-addressed output id, given the
// derivation's masked modulo hash.
func MakeOutputPath(storeDir, id string, drvHash Hash, drvName string) string {
	return MakeStorePath(storeDir, "output:"+id, drvHash, OutputPathName(drvName, id))
}
