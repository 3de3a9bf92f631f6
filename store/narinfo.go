package store

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// NarFile is one way to fetch a NAR, as one URL/Compression/FileHash/FileSize
// group of a narinfo. Guix narinfos list one group per compression.
type NarFile struct {
	URL         string
	Compression string
	FileHash    Hash  // zero when absent
	FileSize    int64 // 0 when absent
}

// NarInfo is a parsed narinfo file, Nix or Guix flavoured.
//
// The single-valued fields follow Nix 2.8: when URL, Compression, FileHash
// or FileSize repeat, the last one wins. Files keeps every group in order,
// the way Guix reads them. Raw is the text the NarInfo was parsed from; Guix
// signatures are checked against it, never against a re-rendering.
type NarInfo struct {
	StorePath   string // full path, e.g. /nix/store/<hash>-name
	URL         string // NAR location relative to the cache root
	Compression string // "" is read as bzip2, as Nix does
	FileHash    Hash
	FileSize    int64
	NarHash     Hash
	NarSize     int64
	References  []string // base names, in the order given
	Deriver     string   // base name, "" for none
	System      string
	Sigs        []string // Nix "keyname:base64" signatures
	CA          string   // rendered content address, "" for none

	Files     []NarFile // every URL group, in order (Guix)
	Signature string    // the first Guix "Signature:" value, "" for none
	Raw       []byte    // the text parsed, nil for a NarInfo built in code
}

// nixNarInfoBad wraps a narinfo error.
func nixNarInfoBad(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrBadNarInfo, fmt.Sprintf(format, a...))
}

// ParseNarInfo parses a narinfo with Nix 2.8's rules: lines "Key: value\n"
// (the value starts two bytes after the colon and every line needs its
// newline), StorePath, URL, NarHash and a NarSize > 0 required, hashes and
// reference base names valid, one non-empty References line, at most one
// CA. Unknown keys are ignored, except that Guix's Signature value and its
// repeated URL groups are kept too.
func ParseNarInfo(b []byte) (*NarInfo, error) {
	s := string(b)
	ni := &NarInfo{Raw: slices.Clone(b)}
	var (
		havePath, haveNarHash, haveRefs, haveCA, haveSig bool
		urls, comps, sizes, hashes                       []string
	)
	for pos := 0; pos < len(s); {
		colon := strings.IndexByte(s[pos:], ':')
		if colon < 0 {
			return nil, nixNarInfoBad("line without a colon at byte %d", pos)
		}
		colon += pos
		name := s[pos:colon]
		if colon+2 > len(s) {
			return nil, nixNarInfoBad("line %q has no newline", name)
		}
		eol := strings.IndexByte(s[colon+2:], '\n')
		if eol < 0 {
			return nil, nixNarInfoBad("line %q has no newline", name)
		}
		eol += colon + 2
		value := s[colon+2 : eol]
		pos = eol + 1

		switch name {
		case "StorePath":
			if err := checkNarInfoStorePath(value); err != nil {
				return nil, err
			}
			ni.StorePath, havePath = value, true
		case "URL":
			ni.URL = value
			urls = append(urls, value)
		case "Compression":
			ni.Compression = value
			comps = append(comps, value)
		case "FileHash":
			h, err := parseNarInfoHash(value)
			if err != nil {
				return nil, nixNarInfoBad("FileHash: %v", err)
			}
			ni.FileHash = h
			hashes = append(hashes, value)
		case "FileSize":
			n, err := parseNarInfoSize(value)
			if err != nil {
				return nil, nixNarInfoBad("FileSize %q", value)
			}
			ni.FileSize = n
			sizes = append(sizes, value)
		case "NarHash":
			h, err := parseNarInfoHash(value)
			if err != nil {
				return nil, nixNarInfoBad("NarHash: %v", err)
			}
			ni.NarHash, haveNarHash = h, true
		case "NarSize":
			n, err := parseNarInfoSize(value)
			if err != nil {
				return nil, nixNarInfoBad("NarSize %q", value)
			}
			ni.NarSize = n
		case "References":
			// Nix rejects a second References line only when the
			// first one listed something.
			if haveRefs && len(ni.References) > 0 {
				return nil, nixNarInfoBad("more than one References line")
			}
			haveRefs = true
			for _, r := range strings.Split(value, " ") {
				if r == "" {
					continue
				}
				if err := checkStoreBaseName(r); err != nil {
					return nil, nixNarInfoBad("reference: %v", err)
				}
				ni.References = append(ni.References, r)
			}
		case "Deriver":
			if value == "unknown-deriver" {
				ni.Deriver = ""
				break
			}
			if err := checkStoreBaseName(value); err != nil {
				return nil, nixNarInfoBad("Deriver: %v", err)
			}
			ni.Deriver = value
		case "System":
			ni.System = value
		case "Sig":
			ni.Sigs = append(ni.Sigs, value)
		case "CA":
			if haveCA {
				return nil, nixNarInfoBad("more than one CA line")
			}
			ca, err := normalizeContentAddress(value)
			if err != nil {
				return nil, err
			}
			ni.CA, haveCA = ca, ca != ""
		case "Signature":
			if !haveSig {
				ni.Signature, haveSig = strings.TrimSpace(value), true
			}
		}
	}
	if ni.Compression == "" {
		ni.Compression = "bzip2"
	}
	switch {
	case !havePath:
		return nil, nixNarInfoBad("no StorePath")
	case !haveNarHash:
		return nil, nixNarInfoBad("no NarHash")
	case ni.URL == "":
		return nil, nixNarInfoBad("no URL")
	case ni.NarSize == 0:
		return nil, nixNarInfoBad("NarSize is missing or 0")
	}
	ni.Files = zipNarFiles(urls, comps, hashes, sizes)
	return ni, nil
}

// zipNarFiles builds the Guix groups: the i-th URL goes with the i-th
// Compression, FileHash and FileSize. The values were validated already.
func zipNarFiles(urls, comps, hashes, sizes []string) []NarFile {
	files := make([]NarFile, len(urls))
	for i := range files {
		files[i].URL = urls[i]
		if i < len(comps) {
			files[i].Compression = comps[i]
		}
		if i < len(hashes) {
			files[i].FileHash, _ = parseNarInfoHash(hashes[i])
		}
		if i < len(sizes) {
			files[i].FileSize, _ = parseNarInfoSize(sizes[i])
		}
	}
	return files
}

// parseNarInfoHash is ParseHash that also checks the digest length, which
// a base-64 digest without padding can get wrong.
func parseNarInfoHash(v string) (Hash, error) {
	h, err := ParseHash(v)
	if err != nil {
		return Hash{}, err
	}
	if len(h.Digest) != h.Algo.Size() {
		return Hash{}, fmt.Errorf("%w: %q decodes to %d bytes", ErrBadHash, v, len(h.Digest))
	}
	return h, nil
}

// parseNarInfoSize parses a non-negative decimal size.
func parseNarInfoSize(v string) (int64, error) {
	if v == "" || strings.TrimLeft(v, "0123456789") != "" {
		return 0, ErrBadNarInfo
	}
	return strconv.ParseInt(v, 10, 64)
}

// checkNarInfoStorePath checks an absolute store path in any store dir.
func checkNarInfoStorePath(p string) error {
	if _, err := ParseStorePath("", p); err != nil {
		return nixNarInfoBad("StorePath: %v", err)
	}
	return nil
}

// checkStoreBaseName checks a "<hash>-<name>" base name.
func checkStoreBaseName(b string) error {
	_, _, err := ParseStorePathBase(b)
	return err
}

// normalizeContentAddress parses a CA value the way Nix 2.8 does and renders
// it back ("" stays ""): text:sha256:<nix32> or fixed:[r:]<algo>:<nix32>.
func normalizeContentAddress(v string) (string, error) {
	if v == "" {
		return "", nil
	}
	prefix, rest, ok := strings.Cut(v, ":")
	if !ok {
		return "", nixNarInfoBad("CA %q has no prefix", v)
	}
	switch prefix {
	case "text":
		h, err := parseUnprefixedCAHash(rest)
		if err != nil {
			return "", err
		}
		if h.Algo != SHA256 {
			return "", nixNarInfoBad("CA %q: text hashes must be sha256", v)
		}
		return "text:" + h.String(), nil
	case "fixed":
		method := ""
		if r, ok := strings.CutPrefix(rest, "r:"); ok {
			method, rest = "r:", r
		}
		h, err := parseUnprefixedCAHash(rest)
		if err != nil {
			return "", err
		}
		return "fixed:" + method + h.String(), nil
	}
	return "", nixNarInfoBad("CA %q has an unknown prefix", v)
}

func parseUnprefixedCAHash(s string) (Hash, error) {
	algo, digest, ok := strings.Cut(s, ":")
	if !ok {
		return Hash{}, nixNarInfoBad("CA hash %q has no algorithm", s)
	}
	h, err := ParseHashAs(algo, digest)
	if err == nil && len(h.Digest) != h.Algo.Size() {
		err = fmt.Errorf("%w: %q decodes to %d bytes", ErrBadHash, s, len(h.Digest))
	}
	if err != nil {
		return Hash{}, nixNarInfoBad("CA: %v", err)
	}
	return h, nil
}

// Bytes renders the narinfo exactly as Nix 2.8 writes one: StorePath, URL,
// Compression, FileHash, FileSize, NarHash, NarSize, References (sorted,
// unique), Deriver?, System?, Sig* (sorted, unique), CA?. FileHash is left
// out when unset, and FileSize when it is unset too and the size is 0 (Nix
// always has both). An empty Compression is written as bzip2, which is what
// Nix reads it as. Guix-only fields are not written.
func (ni *NarInfo) Bytes() []byte {
	var b strings.Builder
	line := func(k, v string) { b.WriteString(k + ": " + v + "\n") }
	line("StorePath", ni.StorePath)
	line("URL", ni.URL)
	comp := ni.Compression
	if comp == "" {
		comp = "bzip2"
	}
	line("Compression", comp)
	if !ni.FileHash.IsZero() {
		line("FileHash", ni.FileHash.String())
	}
	if !ni.FileHash.IsZero() || ni.FileSize != 0 {
		line("FileSize", strconv.FormatInt(ni.FileSize, 10))
	}
	line("NarHash", ni.NarHash.String())
	line("NarSize", strconv.FormatInt(ni.NarSize, 10))
	line("References", strings.Join(sortedUnique(ni.References), " "))
	if ni.Deriver != "" {
		line("Deriver", ni.Deriver)
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

// Fingerprint is the text Nix signs: "1;<StorePath>;<NarHash as
// sha256:nix32>;<NarSize>;<references as full paths, sorted, comma-joined>".
// storeDir prefixes the reference base names.
func (ni *NarInfo) Fingerprint(storeDir string) string {
	refs := sortedUnique(ni.References)
	for i, r := range refs {
		refs[i] = storeDir + "/" + r
	}
	return "1;" + ni.StorePath + ";" + ni.NarHash.String() + ";" +
		strconv.FormatInt(ni.NarSize, 10) + ";" + strings.Join(refs, ",")
}

// StoreDir is the directory part of StorePath ("/nix/store").
func (ni *NarInfo) StoreDir() string {
	i := strings.LastIndexByte(ni.StorePath, '/')
	if i < 0 {
		return ""
	}
	return ni.StorePath[:i]
}

func sortedUnique(in []string) []string {
	out := slices.Clone(in)
	slices.Sort(out)
	return slices.Compact(out)
}
