package narcache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/drvmesh/drvmesh/store"
)

// Fetcher fetches a nar file from another node; P2P implements it.
type Fetcher interface {
	// Fetch returns the file's bytes as the holder sends them, unverified,
	// and their length.
	Fetch(ctx context.Context, h Holder, f File) (io.ReadCloser, int64, error)
}

// Logs gives access to build logs; the node implements it.
type Logs interface {
	// OpenLog opens the log of the derivation with this base name
	// ("<hash>-<name>.drv"). It returns an error wrapping ErrNotFound when
	// the mesh has no such log.
	OpenLog(ctx context.Context, drvBase string) (io.ReadCloser, error)
}

// HandlerConfig configures the binary cache handler.
type HandlerConfig struct {
	// StoreDir is advertised in nix-cache-info. Default /nix/store.
	StoreDir string
	// Priority is advertised in nix-cache-info (lower is preferred).
	// Default 30.
	Priority int
	// Disk holds the local nar files. Required.
	Disk *Disk
	// Index is the mesh index. Required.
	Index Index
	// Fetcher gets nar files this node lacks from their holders; nil
	// serves local files only.
	Fetcher Fetcher
	// Logs serves /log/; nil answers 404.
	Logs Logs
	// Key, when set, signs every narinfo as it is rendered.
	Key *store.SecretKey
	// GuixKey, when set, adds a Guix Signature field to every narinfo,
	// in the layout of current guix publish (signed part first), so Guix
	// clients that authorised the key accept it; Nix reads it as well.
	GuixKey *store.GuixSecretKey
	// GuixHost is the host name the Guix signature carries (unsigned,
	// informational). Default "drvmesh".
	GuixHost string
	// NarInfoTTL is the max-age of narinfo responses. Default one hour.
	NarInfoTTL time.Duration
	// NegativeTTL is the max-age of 404 responses. Default one minute.
	NegativeTTL time.Duration
	// CacheSize is about how many rendered narinfos to keep. Default
	// 65536; negative keeps none.
	CacheSize int
	// NarInfoRecheck is how long a rendered narinfo is served without
	// asking the index whether its entry changed. Zero (the default) asks
	// on every request, through VersionIndex.Version when the Index has
	// it, else Lookup. A few seconds spare an expensive index most of the
	// work on busy paths, and clients cache narinfos for NarInfoTTL anyway.
	NarInfoRecheck time.Duration
	// FetchTimeout bounds a fetch-through, which goes on (to keep the
	// local copy) after the client has gone. Default 30 minutes.
	FetchTimeout time.Duration
	// OnBadPeer is called when a peer's nar fails verification.
	OnBadPeer func(peerID string, err error)
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// Handler serves the Nix (and Guix) binary cache routes: /nix-cache-info,
// /<hash>.narinfo, /nar/<filehash>.nar[.zst|.xz], /nar/[<compression>/]
// <hash>-<name> and /log/<drv>. Any other path answers 404. Nar files
// other nodes hold are fetched while they are streamed to the client, and
// kept once verified.
type Handler struct {
	cfg       HandlerConfig
	log       *slog.Logger
	cache     *narInfoCache
	versions  VersionIndex // cfg.Index when it implements VersionIndex
	recheck   time.Duration
	date      dateHeader
	cacheInfo []byte
	posCC     []string
	negCC     []string
	suspects  suspects // holders whose last transfer failed
}

// Header values shared by every response; never modified.
var (
	ctNarInfo    = []string{"text/x-nix-narinfo"}
	ctCacheInfo  = []string{"text/x-nix-cache-info"}
	ctNar        = []string{"application/x-nix-nar"}
	ctLog        = []string{"text/plain; charset=utf-8"}
	ccImmutable  = []string{"public, max-age=31536000, immutable"}
	acceptRanges = []string{"bytes"}
)

// NewHandler checks the configuration and builds the handler.
func NewHandler(cfg HandlerConfig) (*Handler, error) {
	if cfg.Disk == nil || cfg.Index == nil {
		return nil, errors.New("handler config: disk and index are required")
	}
	if cfg.StoreDir == "" {
		cfg.StoreDir = "/nix/store"
	}
	if cfg.Priority == 0 {
		cfg.Priority = 30
	}
	if cfg.NarInfoTTL <= 0 {
		cfg.NarInfoTTL = time.Hour
	}
	if cfg.NegativeTTL <= 0 {
		cfg.NegativeTTL = time.Minute
	}
	if cfg.CacheSize == 0 {
		cfg.CacheSize = 65536
	}
	if cfg.FetchTimeout <= 0 {
		cfg.FetchTimeout = 30 * time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	versions, _ := cfg.Index.(VersionIndex)
	return &Handler{
		cfg:      cfg,
		log:      cfg.Logger,
		cache:    newNarInfoCache(cfg.CacheSize),
		versions: versions,
		recheck:  max(cfg.NarInfoRecheck, 0),
		cacheInfo: []byte(fmt.Sprintf("StoreDir: %s\nWantMassQuery: 1\nPriority: %d\n",
			cfg.StoreDir, cfg.Priority)),
		posCC: []string{"public, max-age=" + strconv.Itoa(int(cfg.NarInfoTTL.Seconds()))},
		negCC: []string{"public, max-age=" + strconv.Itoa(int(cfg.NegativeTTL.Seconds()))},
	}, nil
}

// ServeHTTP routes a binary cache request.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	p := r.URL.Path
	switch {
	case p == "/nix-cache-info":
		hdr := w.Header()
		hdr["Content-Type"] = ctCacheInfo
		hdr["Content-Length"] = []string{strconv.Itoa(len(h.cacheInfo))}
		if r.Method == http.MethodGet {
			_, _ = w.Write(h.cacheInfo)
		}
	case strings.HasSuffix(p, ".narinfo") && len(p) == 1+store.StorePathHashLen+len(".narinfo"):
		h.serveNarInfo(w, r, p[1:1+store.StorePathHashLen])
	case strings.HasPrefix(p, "/nar/"):
		h.serveNarPath(w, r, p[len("/nar/"):])
	case strings.HasPrefix(p, "/log/"):
		h.serveLog(w, r, p[len("/log/"):])
	default:
		h.notFound(w)
	}
}

// notFound answers 404 with the negative TTL.
func (h *Handler) notFound(w http.ResponseWriter) {
	hdr := w.Header()
	hdr["Cache-Control"] = h.negCC
	hdr["Content-Type"] = ctLog
	w.WriteHeader(http.StatusNotFound)
	_, _ = io.WriteString(w, "404 not found\n")
}

// serveNarPath routes the /nar/ forms.
func (h *Handler) serveNarPath(w http.ResponseWriter, r *http.Request, rest string) {
	if key, comp, ok := parseFileName(rest); ok {
		fh, _ := ParseFileKey(key)
		h.serveFile(w, r, File{Compression: comp, FileHash: fh})
		return
	}
	comp := CompressionNone
	if c, base, ok := strings.Cut(rest, "/"); ok {
		comp, rest = c, base
	}
	hashPart, _, err := store.ParseStorePathBase(rest)
	if err != nil || checkCompression(comp) != nil {
		h.notFound(w)
		return
	}
	e, ok := h.cfg.Index.Lookup(hashPart)
	if !ok || e.Info == nil || !strings.HasSuffix(e.Info.StorePath, "/"+rest) {
		h.notFound(w)
		return
	}
	var forms []File
	for _, f := range e.Files {
		if f.Compression == comp {
			forms = append(forms, f)
		}
	}
	if f, ok := chooseFile(h.cfg.Disk, forms); ok {
		h.serveFile(w, r, f)
		return
	}
	if comp != CompressionNone {
		h.notFound(w)
		return
	}
	h.serveDecompressed(w, r, e)
}

// serveFile serves a nar file from disk (whole files by sendFile, ranges
// through ServeContent) or through a peer.
func (h *Handler) serveFile(w http.ResponseWriter, r *http.Request, want File) {
	fh, f, err := h.cfg.Disk.Open(want.Key())
	if err == nil {
		defer fh.Close()
		if f.Compression != want.Compression {
			h.notFound(w)
			return
		}
		hdr := w.Header()
		hdr["Content-Type"] = ctNar
		hdr["Cache-Control"] = ccImmutable
		if _, ranged := r.Header["Range"]; ranged {
			http.ServeContent(w, r, "", time.Time{}, fh)
			return
		}
		h.sendFile(w, r, fh)
		return
	}
	if !errors.Is(err, ErrNotFound) {
		h.log.Error("open nar", "file", want.Key(), "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	h.fetchThrough(w, r, want)
}

// smallFile is the size up to which a nar file is read and written in one
// piece, so that headers and body leave in one write.
const smallFile = 32 << 10

// smallBufs holds buffers of smallFile bytes.
var smallBufs = sync.Pool{New: func() any { b := make([]byte, smallFile); return &b }}

// sendFile sends a whole nar file: a small one from a pooled buffer, a
// large one by sendfile. Range requests go through http.ServeContent.
func (h *Handler) sendFile(w http.ResponseWriter, r *http.Request, fh *os.File) {
	st, err := fh.Stat()
	if err != nil {
		h.log.Error("stat nar", "file", fh.Name(), "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	size := st.Size()
	hdr := w.Header()
	hdr["Accept-Ranges"] = acceptRanges
	hdr["Content-Length"] = []string{strconv.FormatInt(size, 10)}
	if r.Method == http.MethodHead {
		return
	}
	if size <= smallFile {
		bp := smallBufs.Get().(*[]byte)
		defer smallBufs.Put(bp)
		n, err := io.ReadFull(fh, (*bp)[:size])
		if err != nil {
			h.log.Error("read nar", "file", fh.Name(), "err", err)
			panic(http.ErrAbortHandler) // headers promise size bytes
		}
		_, _ = w.Write((*bp)[:n])
		return
	}
	if _, err := io.Copy(w, fh); err != nil {
		h.log.Debug("send nar", "file", fh.Name(), "err", err)
	}
}

// serveDecompressed streams the uncompressed NAR of e from a local
// compressed file, fetching one from a peer first if needed.
func (h *Handler) serveDecompressed(w http.ResponseWriter, r *http.Request, e Entry) {
	f, ok := chooseFile(h.cfg.Disk, e.Files)
	if !ok {
		h.notFound(w)
		return
	}
	if !h.cfg.Disk.Has(f.Key()) {
		if _, err := h.replicate(r.Context(), f); err != nil {
			h.log.Warn("fetch nar for decompression", "file", f.Key(), "err", err)
			h.notFound(w)
			return
		}
	}
	rc, _, err := h.cfg.Disk.OpenNar(f.Key())
	if err != nil {
		h.notFound(w)
		return
	}
	defer rc.Close()
	hdr := w.Header()
	hdr["Content-Type"] = ctNar
	hdr["Cache-Control"] = ccImmutable
	if e.Info.NarSize > 0 {
		hdr["Content-Length"] = []string{strconv.FormatInt(e.Info.NarSize, 10)}
	}
	if r.Method == http.MethodHead {
		return
	}
	if _, err := io.CopyBuffer(w, rc, make([]byte, copyBufSize)); err != nil {
		h.log.Debug("send decompressed nar", "file", f.Key(), "err", err)
	}
}

// serveLog streams a build log.
func (h *Handler) serveLog(w http.ResponseWriter, r *http.Request, base string) {
	if h.cfg.Logs == nil || base == "" || strings.ContainsAny(base, "/\x00") {
		h.notFound(w)
		return
	}
	rc, err := h.cfg.Logs.OpenLog(r.Context(), base)
	if err != nil {
		if !errors.Is(err, ErrNotFound) {
			h.log.Warn("open build log", "drv", base, "err", err)
		}
		h.notFound(w)
		return
	}
	defer rc.Close()
	w.Header()["Content-Type"] = ctLog
	if r.Method == http.MethodHead {
		return
	}
	_, _ = io.Copy(w, rc)
}
