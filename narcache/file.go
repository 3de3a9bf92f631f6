package narcache

import (
	"fmt"
	"strings"

	"github.com/drvmesh/drvmesh/store"
)

// Compressions this package writes and reads.
const (
	CompressionZstd = "zstd"
	CompressionXz   = "xz"
	CompressionNone = "none"
)

// File is one stored, possibly compressed, form of a NAR. It is named on
// disk and in URLs by its FileHash, the SHA-256 of the file's bytes.
type File struct {
	Compression string     // CompressionZstd, CompressionXz or CompressionNone
	FileHash    store.Hash // sha256 of the file bytes
	FileSize    int64      // size of the file bytes; 0 when unknown
	NarHash     store.Hash // sha256 of the uncompressed NAR; zero when unknown
	NarSize     int64      // size of the uncompressed NAR; 0 when unknown
}

// Key is the nix32 FileHash digest that names the file on disk and in the
// mesh index.
func (f File) Key() string { return f.FileHash.Nix32() }

// URL is the cache-relative URL Nix narinfos name: nar/<filehash>.nar.zst.
func (f File) URL() string { return "nar/" + f.Key() + extension(f.Compression) }

// Nar is the result of ingesting a NAR: its hash and size, and the files it
// was stored as, in the order of the configured compressions.
type Nar struct {
	NarHash store.Hash
	NarSize int64
	Files   []File
}

// extension is the file name suffix for a compression.
func extension(compression string) string {
	switch compression {
	case CompressionZstd:
		return ".nar.zst"
	case CompressionXz:
		return ".nar.xz"
	default:
		return ".nar"
	}
}

// parseFileName splits "<nix32>.nar.zst" into the key and compression.
func parseFileName(name string) (key, compression string, ok bool) {
	for _, c := range []string{CompressionZstd, CompressionXz, CompressionNone} {
		if k, found := strings.CutSuffix(name, extension(c)); found {
			if len(k) != store.Nix32EncodedLen(32) {
				return "", "", false
			}
			if _, err := store.DecodeNix32(k); err != nil {
				return "", "", false
			}
			return k, c, true
		}
	}
	return "", "", false
}

// ParseFileKey parses a nix32 FileHash digest, as found in nar URLs.
func ParseFileKey(key string) (store.Hash, error) {
	h, err := store.ParseHashAs(string(store.SHA256), key)
	if err != nil || len(key) != store.Nix32EncodedLen(32) {
		return store.Hash{}, fmt.Errorf("file hash %q: %w", key, store.ErrBadHash)
	}
	return h, nil
}

// checkCompression rejects compressions this package cannot handle.
func checkCompression(c string) error {
	switch c {
	case CompressionZstd, CompressionXz, CompressionNone:
		return nil
	}
	return fmt.Errorf("%w: %q", ErrBadCompression, c)
}
