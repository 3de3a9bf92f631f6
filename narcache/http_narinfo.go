package narcache

import (
	"net/http"
	"slices"
	"time"

	"github.com/drvmesh/drvmesh/store"
)

// Entry is what the replicated index knows about one store path.
type Entry struct {
	// Info holds StorePath, NarHash, NarSize, References, Deriver, System,
	// CA and any stored Sigs. Its URL/Compression/FileHash/FileSize are
	// ignored: the handler fills them from Files. It is never modified.
	Info *store.NarInfo
	// Files are the forms of the NAR the mesh holds.
	Files []File
	// Version changes whenever the entry changes (a raft index will do);
	// rendered narinfos are cached by hash part and version.
	Version uint64
}

// Index is the read view of the replicated mesh index that the handler
// needs; the node implements it.
type Index interface {
	// Lookup returns the entry of the store path with this hash part.
	Lookup(hashPart string) (Entry, bool)
	// Holders returns the other nodes that hold the file with this key
	// (nix32 FileHash), best first.
	Holders(key string) []Holder
}

// VersionIndex is an Index that can tell an entry's Version without
// building the Entry. The handler uses it, when the Index implements it, to
// check a cached narinfo on every request and calls Lookup only to render
// a version it has not cached. Version must agree with Lookup: ok is false
// exactly when Lookup finds no entry, and version is the Version Lookup
// would return. It should be cheap (no decoding, no allocation): it runs
// once per narinfo request.
type VersionIndex interface {
	Index
	Version(hashPart string) (version uint64, ok bool)
}

// compressionRank orders the forms a narinfo advertises: zstd is small and
// fast to decode, xz is what old clients know, none is the largest.
func compressionRank(c string) int {
	switch c {
	case CompressionZstd:
		return 0
	case CompressionXz:
		return 1
	default:
		return 2
	}
}

// chooseFile picks the file a narinfo names: a local one if any, then by
// compression preference.
func chooseFile(d *Disk, files []File) (File, bool) {
	best, found, bestLocal := File{}, false, false
	for _, f := range files {
		if checkCompression(f.Compression) != nil {
			continue
		}
		local := d.Has(f.Key())
		better := !found || (local && !bestLocal) ||
			(local == bestLocal && compressionRank(f.Compression) < compressionRank(best.Compression))
		if better {
			best, found, bestLocal = f, true, local
		}
	}
	return best, found
}

// renderNarInfo renders the narinfo of e naming file f, adding a Nix
// signature by key and a Guix one by guix when given.
func renderNarInfo(e Entry, f File, key *store.SecretKey, guix *store.GuixSecretKey, host string) []byte {
	ni := *e.Info
	ni.Sigs = slices.Clone(e.Info.Sigs)
	ni.URL = f.URL()
	ni.Compression = f.Compression
	ni.FileHash = f.FileHash
	ni.FileSize = f.FileSize
	ni.Files, ni.Signature, ni.Raw = nil, "", nil
	if key != nil {
		key.SignNarInfo(&ni, ni.StoreDir())
	}
	if guix != nil {
		if host == "" {
			host = "drvmesh"
		}
		return guix.GuixNarInfoText(&ni, host)
	}
	return ni.Bytes()
}

// serveNarInfo answers /<hash>.narinfo from the index, rendering and
// signing once per entry version. A cached rendering is served as long as
// the index still has its version, or, within NarInfoRecheck of the last
// check, without asking the index.
func (h *Handler) serveNarInfo(w http.ResponseWriter, r *http.Request, hashPart string) {
	now := time.Now()
	var checkedAt time.Time // stays zero without a recheck interval
	if h.recheck > 0 {
		checkedAt = now
	}
	rd := h.cache.get(hashPart)
	if rd == nil || !rd.fresh(now, h.recheck) {
		rd = h.checkNarInfo(hashPart, rd, checkedAt)
		if rd == nil {
			h.notFound(w)
			return
		}
	}
	hdr := w.Header()
	hdr["Content-Type"] = ctNarInfo
	hdr["Cache-Control"] = h.posCC
	hdr["Content-Length"] = rd.length
	hdr["Date"] = h.date.get(now)
	if r.Method == http.MethodGet {
		_, _ = w.Write(rd.body)
	}
}

// checkNarInfo asks the index about hashPart and returns the rendering to
// serve: cached when its version is current, otherwise a new one, either
// marked as checked at now (zero without a recheck interval). It returns
// nil when the index has no servable entry.
func (h *Handler) checkNarInfo(hashPart string, cached *rendered, now time.Time) *rendered {
	if h.versions != nil && cached != nil {
		v, ok := h.versions.Version(hashPart)
		if !ok {
			return nil
		}
		if v == cached.version {
			cached.checked(now)
			return cached
		}
	}
	e, ok := h.cfg.Index.Lookup(hashPart)
	if !ok || e.Info == nil {
		return nil
	}
	if cached != nil && e.Version == cached.version {
		cached.checked(now)
		return cached
	}
	f, ok := chooseFile(h.cfg.Disk, e.Files)
	if !ok {
		return nil
	}
	return h.cache.put(hashPart, newRendered(e.Version, renderNarInfo(e, f, h.cfg.Key, h.cfg.GuixKey, h.cfg.GuixHost), now))
}
