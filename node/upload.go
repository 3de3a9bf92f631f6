package node

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/drvmesh/drvmesh/consensus"
	"github.com/drvmesh/drvmesh/narcache"
	"github.com/drvmesh/drvmesh/store"
)

// maxDrvNar bounds the NAR of an uploaded .drv, which is read whole.
const maxDrvNar = 16 << 20

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
func (n *Node) handleUploadNar(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	path := q.Get("path")
	if _, err := store.ParseStorePath(n.cfg.StoreDir, path); err != nil {
		apiError(w, http.StatusBadRequest, "%v", err)
		return
	}
	var exp narcache.Expect
	if s := q.Get("nar_hash"); s != "" {
		h, err := store.ParseHash(s)
		if err != nil {
			apiError(w, http.StatusBadRequest, "nar_hash: %v", err)
			return
		}
		exp.NarHash = h
	}
	if s := q.Get("nar_size"); s != "" {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil || v <= 0 {
			apiError(w, http.StatusBadRequest, "nar_size must be a positive number")
			return
		}
		exp.NarSize = v
	}
	refs := q["reference"]
	for _, ref := range refs {
		if _, err := store.ParseStorePath(n.cfg.StoreDir, ref); err != nil {
			apiError(w, http.StatusBadRequest, "reference: %v", err)
			return
		}
	}
	if others := slices.DeleteFunc(slices.Clone(refs), func(s string) bool { return s == path }); len(others) > 0 {
		missing, err := n.raft.State().MissingPaths(others)
		if err == nil && len(missing) > 0 {
			apiError(w, http.StatusBadRequest, "upload its references first: the mesh lacks %s", strings.Join(missing, " "))
			return
		}
	}
	var body io.Reader = r.Body
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
	nar, err := n.disk.Ingest(r.Context(), body, exp)
	if err != nil {
		apiError(w, statusOfIngest(err), "%s: %v", path, err)
		return
	}
	ca, err := contentAddress(path, refs, nar.NarHash, content)
	if err != nil {
		// The bytes were fine but do not make this path: keep nothing.
		n.dropUnreferenced(nar)
		apiError(w, http.StatusBadRequest, "%v", err)
		return
	}
	rec := n.narInfoRecord(path, nar, refs, "", "", ca)
	if _, err := n.apply(r.Context(), &consensus.PutNarInfos{NarInfos: []consensus.NarInfo{rec}, Holder: n.cfg.Name}); err != nil {
		apiError(w, statusOf(err), "record %s: %v", path, err)
		return
	}
	n.noteFiles(&rec)
	hp, _ := consensus.HashPart(path)
	n.replicateAsync(hp)
	writeJSON(w, http.StatusOK, map[string]any{"path": path, "nar_hash": rec.NarHash, "nar_size": rec.NarSize})
}

// dropUnreferenced removes freshly ingested files no narinfo names.
func (n *Node) dropUnreferenced(nar narcache.Nar) {
	for _, f := range nar.Files {
		if _, known := n.fileIndex(f.Key()); !known {
			_ = n.disk.Remove(f.Key())
		}
	}
}

func statusOfIngest(err error) int {
	if errors.Is(err, store.ErrBadNar) || errors.Is(err, narcache.ErrHashMismatch) || errors.Is(err, narcache.ErrCorrupt) || errors.Is(err, narcache.ErrTrailingData) {
		return http.StatusBadRequest
	}
	return http.StatusInternalServerError
}
