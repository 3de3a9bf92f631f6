package httpapi

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	wire "github.com/drvmesh/drvmesh/api"
	"github.com/drvmesh/drvmesh/consensus"
	"github.com/drvmesh/drvmesh/narcache"
	"github.com/drvmesh/drvmesh/store"
)

// What one upload may hold. A .drv's NAR is read whole, so it is small;
// other NARs stream to disk and are bounded by Config.MaxUpload. The
// references and paths of a record are bounded before they are read
// (real paths have at most a few thousand references).
const (
	maxDrvNar = 16 << 20
	// DefaultMaxUpload is Config.MaxUpload's default.
	DefaultMaxUpload = 4 << 30
	// MaxReferences bounds the references of one uploaded path.
	MaxReferences = 10_000
	// maxImportMeta bounds the paths and references of one whole import
	// stream, which are kept until its single commit.
	maxImportMeta = 64 << 20
)

// exportLimits are the bounds of an import stream's trailers.
var exportLimits = store.ExportLimits{MaxPath: maxPathLen, MaxReferences: MaxReferences, MaxSignature: 4 << 10}

// capReader fails with ErrTooLarge once more than n bytes were read, so
// an ingest stops (and removes its temporary files) at the limit.
type capReader struct {
	r io.Reader
	n int64
}

func (c *capReader) Read(p []byte) (int, error) {
	if c.n < 0 {
		return 0, fmt.Errorf("%w: a NAR over the upload limit", ErrTooLarge)
	}
	if int64(len(p)) > c.n+1 {
		p = p[:c.n+1]
	}
	k, err := c.r.Read(p)
	c.n -= int64(k)
	if c.n < 0 {
		return k, fmt.Errorf("%w: a NAR over the upload limit", ErrTooLarge)
	}
	return k, err
}

// Uploads are how a submitter gives the mesh the .drv files and input
// sources of what it wants built. Only content-addressed paths are taken:
// the node recomputes each path from the bytes it received and the
// references it was told, so an upload can never plant an output or a
// path whose name lies about its content. Outputs enter the mesh only
// from builds.

// drvContent returns the contents of a NAR whose root is one regular file.
func drvContent(nar []byte) ([]byte, error) {
	nr := store.NewNarReader(bytes.NewReader(nar))
	h, err := nr.Next()
	if err != nil {
		return nil, err
	}
	if h.Type != store.NarRegular || h.Executable {
		return nil, fmt.Errorf("%w: a .drv must be a plain regular file", ErrBadRequest)
	}
	content, err := io.ReadAll(nr)
	if err != nil {
		return nil, err
	}
	if _, err := nr.Next(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: trailing data after the .drv", store.ErrBadNar)
	}
	return content, nil
}

// contentAddress checks that path is the content-addressed store path of
// its upload and returns the narinfo CA field for it. refs are full paths;
// content is the .drv text for a .drv, nil otherwise.
func contentAddress(path string, refs []string, narHash store.Hash, content []byte) (string, error) {
	sp, err := store.ParseStorePath("", path)
	if err != nil {
		return "", err
	}
	if strings.HasSuffix(sp.Name, ".drv") {
		if content == nil {
			return "", fmt.Errorf("%w: no content for %s", ErrBadRequest, path)
		}
		if want := store.MakeTextPath(sp.Dir, sp.Name, content, refs); want != path {
			return "", fmt.Errorf("%w: %s is not the text path of what was sent with those references (that is %s)", ErrBadRequest, path, want)
		}
		sum := sha256.Sum256(content)
		return "text:sha256:" + store.EncodeNix32(sum[:]), nil
	}
	self := slices.Contains(refs, path)
	others := slices.DeleteFunc(slices.Clone(refs), func(r string) bool { return r == path })
	if want := store.MakeSourcePath(sp.Dir, sp.Name, narHash, others, self); want != path {
		return "", fmt.Errorf("%w: %s is not content-addressed by what was sent (its source path would be %s); only .drv files and sources can be uploaded, outputs come from builds", ErrBadRequest, path, want)
	}
	return "fixed:r:sha256:" + narHash.Nix32(), nil
}

// handleUploadNar takes one content-addressed path as a NAR:
// PUT /api/v1/nars?path=P&nar_hash=H&nar_size=N&reference=R...
func (api *API) handleUploadNar(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	path := q.Get("path")
	if _, err := store.ParseStorePath(api.cfg.StoreDir, path); err != nil {
		apiError(w, http.StatusBadRequest, "%v", err)
		return
	}
	exp, msg := uploadExpect(q)
	if msg != "" {
		apiError(w, http.StatusBadRequest, "%s", msg)
		return
	}
	if r.ContentLength > api.cfg.MaxUpload || exp.NarSize > api.cfg.MaxUpload {
		apiError(w, http.StatusRequestEntityTooLarge, "%s: a NAR over the upload limit of %d bytes", path, api.cfg.MaxUpload)
		return
	}
	refs := q["reference"]
	if len(refs) > MaxReferences {
		apiError(w, http.StatusRequestEntityTooLarge, "%s: %d references, at most %d", path, len(refs), MaxReferences)
		return
	}
	for _, ref := range refs {
		if _, err := store.ParseStorePath(api.cfg.StoreDir, ref); err != nil {
			apiError(w, http.StatusBadRequest, "reference: %v", err)
			return
		}
	}
	if others := slices.DeleteFunc(slices.Clone(refs), func(s string) bool { return s == path }); len(others) > 0 {
		missing, err := api.raft.State().MissingPaths(others)
		if err == nil && len(missing) > 0 {
			apiError(w, http.StatusBadRequest, "upload its references first: the mesh lacks %s", strings.Join(missing, " "))
			return
		}
	}
	var body io.Reader = &capReader{r: r.Body, n: api.cfg.MaxUpload}
	var content []byte
	if strings.HasSuffix(path, ".drv") {
		nar, err := io.ReadAll(io.LimitReader(r.Body, maxDrvNar+1))
		if err != nil {
			apiError(w, http.StatusBadRequest, "read upload: %v", err)
			return
		}
		if len(nar) > maxDrvNar {
			apiError(w, http.StatusRequestEntityTooLarge, "a .drv NAR over %d bytes", maxDrvNar)
			return
		}
		if content, err = drvContent(nar); err != nil {
			apiError(w, http.StatusBadRequest, "%s: %v", path, err)
			return
		}
		body = bytes.NewReader(nar)
	}
	nar, err := api.disk.Ingest(r.Context(), body, exp)
	if err != nil {
		apiError(w, statusOfIngest(err), "%s: %v", path, err)
		return
	}
	ca, err := contentAddress(path, refs, nar.NarHash, content)
	if err != nil {
		// The bytes were fine but do not make this path: keep nothing.
		api.dropUnreferenced(nar)
		apiError(w, http.StatusBadRequest, "%v", err)
		return
	}
	rec := api.copies.Record(path, nar, refs, "", "", ca)
	if _, err := api.apply.ApplyAndCatchUp(r.Context(), &consensus.PutNarInfos{NarInfos: []consensus.NarInfo{rec}, Holder: api.cfg.Name}); err != nil {
		apiError(w, api.statusOf(err), "record %s: %v", path, err)
		return
	}
	api.files.Note(&rec)
	hp, _ := consensus.HashPart(path)
	if !api.keepCopies(r.Context(), w, hp) {
		return
	}
	writeJSON(w, http.StatusOK, wire.NarRecord{Path: path, NarHash: rec.NarHash, NarSize: rec.NarSize})
}

// uploadExpect is what an upload's query says its NAR is, or why the
// query is malformed.
func uploadExpect(q url.Values) (narcache.Expect, string) {
	var exp narcache.Expect
	if s := q.Get("nar_hash"); s != "" {
		h, err := store.ParseHash(s)
		if err != nil {
			return exp, fmt.Sprintf("nar_hash: %v", err)
		}
		exp.NarHash = h
	}
	if s := q.Get("nar_size"); s != "" {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil || v <= 0 {
			return exp, "nar_size must be a positive number"
		}
		exp.NarSize = v
	}
	return exp, ""
}

// importError is why an import was refused, with its HTTP status.
type importError struct {
	status int
	msg    string
}

func (e *importError) Error() string { return e.msg }

func importErrorf(status int, format string, a ...any) *importError {
	return &importError{status: status, msg: fmt.Sprintf(format, a...)}
}

// handleImportNars takes many content-addressed paths in one request, as
// the stream `nix-store --export` writes: POST /api/v1/nars/import. Each
// path is checked as handleUploadNar checks one, except that its
// references may also be paths earlier in the stream; all are recorded by
// one raft command at the end. Any bad path refuses the whole request and
// keeps nothing of it. Derivers and signatures in the stream are ignored:
// the mesh signs what it records itself.
func (api *API) handleImportNars(w http.ResponseWriter, r *http.Request) {
	var ingested []narcache.Nar
	recs, err := api.importNars(r, &ingested)
	if err == nil && len(recs) > 0 {
		if _, aerr := api.apply.ApplyAndCatchUp(r.Context(), &consensus.PutNarInfos{NarInfos: recs, Holder: api.cfg.Name}); aerr != nil {
			err = importErrorf(api.statusOf(aerr), "record %d paths: %v", len(recs), aerr)
		}
	}
	if err != nil {
		for _, nar := range ingested {
			api.dropUnreferenced(nar)
		}
		var ie *importError
		if !errors.As(err, &ie) {
			ie = importErrorf(http.StatusInternalServerError, "%v", err)
		}
		apiError(w, ie.status, "%s", ie.msg)
		return
	}
	out := make([]wire.NarRecord, 0, len(recs))
	hashParts := make([]string, 0, len(recs))
	for i := range recs {
		api.files.Note(&recs[i])
		hp, _ := consensus.HashPart(recs[i].StorePath)
		hashParts = append(hashParts, hp)
		out = append(out, wire.NarRecord{Path: recs[i].StorePath, NarHash: recs[i].NarHash, NarSize: recs[i].NarSize})
	}
	if len(hashParts) > 0 && !api.keepCopies(r.Context(), w, hashParts...) {
		return
	}
	writeJSON(w, http.StatusOK, wire.ImportResponse{Imported: out})
}

// importNars reads and checks every record of an import, ingesting each
// NAR (appended to *ingested, for the caller to drop on failure), and
// returns the index records to commit.
func (api *API) importNars(r *http.Request, ingested *[]narcache.Nar) ([]consensus.NarInfo, error) {
	er := store.NewExportReader(r.Body)
	er.SetLimits(exportLimits)
	meta := 0 // bytes of paths and references kept
	var recs []consensus.NarInfo
	sent := map[string]bool{}
	// head keeps the start of each NAR: a .drv's is its text, which the
	// path is checked against once the trailer names the path.
	var head bytes.Buffer
	for i := 0; ; i++ {
		narR, err := er.Next()
		if errors.Is(err, io.EOF) {
			return recs, nil
		}
		if err != nil {
			return nil, importErrorf(statusOfImportRead(err), "path #%d of the stream: %v", i+1, err)
		}
		head.Reset()
		tee := io.TeeReader(narR, &capWriter{buf: &head, max: maxDrvNar + 1})
		nar, err := api.disk.Ingest(r.Context(), &capReader{r: tee, n: api.cfg.MaxUpload}, narcache.Expect{})
		if err != nil {
			return nil, importErrorf(statusOfIngest(err), "path #%d of the stream (after %s): %v", i+1, lastPath(recs), err)
		}
		*ingested = append(*ingested, nar)
		info, err := er.Info()
		if err != nil {
			return nil, importErrorf(statusOfImportRead(err), "path #%d of the stream: %v", i+1, err)
		}
		meta += len(info.Path)
		for _, ref := range info.References {
			meta += len(ref)
		}
		if meta > maxImportMeta {
			return nil, importErrorf(http.StatusRequestEntityTooLarge, "path #%d of the stream: the paths and references of one import exceed %d bytes; import in parts", i+1, maxImportMeta)
		}
		rec, err := api.checkImported(info, nar, head.Bytes(), sent)
		if err != nil {
			return nil, err
		}
		sent[info.Path] = true
		recs = append(recs, rec)
	}
}

// checkImported applies handleUploadNar's checks to one imported path and
// returns its index record. sent holds the paths earlier in the stream.
func (api *API) checkImported(info store.ExportInfo, nar narcache.Nar, head []byte, sent map[string]bool) (consensus.NarInfo, error) {
	path := info.Path
	if _, err := store.ParseStorePath(api.cfg.StoreDir, path); err != nil {
		return consensus.NarInfo{}, importErrorf(http.StatusBadRequest, "%v", err)
	}
	if sent[path] {
		return consensus.NarInfo{}, importErrorf(http.StatusBadRequest, "%s is in the stream twice", path)
	}
	var others []string
	for _, ref := range info.References {
		if _, err := store.ParseStorePath(api.cfg.StoreDir, ref); err != nil {
			return consensus.NarInfo{}, importErrorf(http.StatusBadRequest, "%s: reference: %v", path, err)
		}
		if ref != path && !sent[ref] {
			others = append(others, ref)
		}
	}
	if len(others) > 0 {
		missing, err := api.raft.State().MissingPaths(others)
		if err != nil {
			return consensus.NarInfo{}, importErrorf(api.statusOf(err), "%s: look up references: %v", path, err)
		}
		if len(missing) > 0 {
			return consensus.NarInfo{}, importErrorf(http.StatusBadRequest,
				"%s: send its references earlier in the stream: the mesh lacks %s", path, strings.Join(missing, " "))
		}
	}
	var content []byte
	if strings.HasSuffix(path, ".drv") {
		if nar.NarSize > maxDrvNar {
			return consensus.NarInfo{}, importErrorf(http.StatusRequestEntityTooLarge, "%s: a .drv NAR over %d bytes", path, maxDrvNar)
		}
		var err error
		if content, err = drvContent(head); err != nil {
			return consensus.NarInfo{}, importErrorf(http.StatusBadRequest, "%s: %v", path, err)
		}
	}
	ca, err := contentAddress(path, info.References, nar.NarHash, content)
	if err != nil {
		return consensus.NarInfo{}, importErrorf(http.StatusBadRequest, "%v", err)
	}
	return api.copies.Record(path, nar, info.References, "", "", ca), nil
}

// statusOfImportRead is the status for an error reading an import stream:
// a malformed or truncated stream is the client's fault.
func statusOfImportRead(err error) int {
	if errors.Is(err, store.ErrBadNar) {
		return http.StatusBadRequest
	}
	if errors.Is(err, ErrTooLarge) {
		return http.StatusRequestEntityTooLarge
	}
	return http.StatusInternalServerError
}

// lastPath names the last path read, for errors about the next one.
func lastPath(recs []consensus.NarInfo) string {
	if len(recs) == 0 {
		return "the start"
	}
	return recs[len(recs)-1].StorePath
}

// capWriter keeps the first max bytes written to it and drops the rest.
type capWriter struct {
	buf *bytes.Buffer
	max int
}

func (c *capWriter) Write(p []byte) (int, error) {
	if room := c.max - c.buf.Len(); room > 0 {
		c.buf.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

// dropUnreferenced removes freshly ingested files no narinfo names.
func (api *API) dropUnreferenced(nar narcache.Nar) {
	for _, f := range nar.Files {
		if _, known := api.files.HashPart(f.Key()); !known {
			_ = api.disk.Remove(f.Key())
		}
	}
}

func statusOfIngest(err error) int {
	if errors.Is(err, ErrTooLarge) {
		return http.StatusRequestEntityTooLarge
	}
	if errors.Is(err, store.ErrBadNar) || errors.Is(err, narcache.ErrHashMismatch) || errors.Is(err, narcache.ErrCorrupt) || errors.Is(err, narcache.ErrTrailingData) {
		return http.StatusBadRequest
	}
	return http.StatusInternalServerError
}

// copiesTimeout bounds how long an upload waits for its copies.
const copiesTimeout = time.Minute

// keepCopies has new nars copied to MinCopies nodes before the upload is
// answered, so that a submission of what was uploaded does not depend on
// this node alone. If the copies cannot be made it answers 503 (the nars
// stay recorded, and are copied in the background) and reports false.
func (api *API) keepCopies(ctx context.Context, w http.ResponseWriter, hashParts ...string) bool {
	ctx, cancel := context.WithTimeout(ctx, copiesTimeout)
	defer cancel()
	if err := api.copies.EnsureCopies(ctx, hashParts...); err != nil {
		api.copies.ReplicateAsync(hashParts...)
		apiError(w, http.StatusServiceUnavailable, "copy to other nodes: %v", err)
		return false
	}
	return true
}
