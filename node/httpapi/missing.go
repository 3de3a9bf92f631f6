package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	wire "github.com/drvmesh/drvmesh/api"
	"github.com/drvmesh/drvmesh/store"
)

// What one POST /api/v1/paths/missing may ask. The CLI asks about the
// sources and .drv files of a submission's whole closure at once; the
// largest real closures (a NixOS system's derivations) hold tens of
// thousands of paths of under 100 bytes each.
const (
	// MaxMissingPaths is the most paths one request may name.
	MaxMissingPaths = 100_000
	// MaxMissingBody bounds the request body: MaxMissingPaths paths of
	// a typical 77 bytes (/nix/store/, the hash, a 30-byte name) with
	// their JSON quoting, 8 MB.
	MaxMissingBody = MaxMissingPaths * 80
	// maxPathLen bounds one path: a store path is at most 211 bytes of
	// name, its hash and its store directory.
	maxPathLen = 512
)

// decodeMissing reads {"paths": [...]} one path at a time, refusing more
// than MaxMissingPaths or a path over maxPathLen as it goes, so a hostile
// body costs no more memory than the paths it may name.
func decodeMissing(r io.Reader) ([]string, error) {
	dec := json.NewDecoder(r)
	if err := expectDelim(dec, '{'); err != nil {
		return nil, err
	}
	paths := []string{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		if tok != "paths" {
			return nil, fmt.Errorf("%w: unknown field %v", ErrBadRequest, tok)
		}
		if err := expectDelim(dec, '['); err != nil {
			return nil, err
		}
		for dec.More() {
			if len(paths) == MaxMissingPaths {
				return nil, fmt.Errorf("%w: more than %d paths; ask in parts", ErrTooLarge, MaxMissingPaths)
			}
			var p string
			if err := dec.Decode(&p); err != nil {
				return nil, err
			}
			if len(p) > maxPathLen {
				return nil, fmt.Errorf("%w: a path of %d bytes", ErrBadRequest, len(p))
			}
			paths = append(paths, p)
		}
		if err := expectDelim(dec, ']'); err != nil {
			return nil, err
		}
	}
	if err := expectDelim(dec, '}'); err != nil {
		return nil, err
	}
	return paths, nil
}

func expectDelim(dec *json.Decoder, want json.Delim) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if tok != want {
		return fmt.Errorf("%w: want %v, got %v", ErrBadRequest, want, tok)
	}
	return nil
}

// handleMissing serves POST /api/v1/paths/missing.
func (api *API) handleMissing(w http.ResponseWriter, r *http.Request) {
	paths, err := decodeMissing(http.MaxBytesReader(w, r.Body, MaxMissingBody))
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe), errors.Is(err, ErrTooLarge):
		apiError(w, http.StatusRequestEntityTooLarge, "paths/missing: %v (at most %d paths in %d bytes)", err, MaxMissingPaths, MaxMissingBody)
		return
	case err != nil:
		apiError(w, http.StatusBadRequest, "want {\"paths\": [...]}: %v", err)
		return
	}
	for _, p := range paths {
		if _, err := store.ParseStorePath(api.cfg.StoreDir, p); err != nil {
			apiError(w, http.StatusBadRequest, "%v", err)
			return
		}
	}
	missing, err := api.raft.State().MissingPaths(paths)
	if err != nil {
		apiError(w, http.StatusInternalServerError, "%v", err)
		return
	}
	if missing == nil {
		missing = []string{}
	}
	writeJSON(w, http.StatusOK, wire.MissingResponse{Missing: missing})
}
