package httpapi

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/drvmesh/drvmesh/consensus"
)

// Build logs live on the node that ran the build, in DATA_DIR/logs. Any
// node serves any log: its own from disk, others' from the building node
// over the cluster port (Jobs.RemoteLog).

// handleBuildLog serves GET /api/v1/builds/{id}/log[?follow=1].
func (api *API) handleBuildLog(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	b, err := api.raft.State().GetBuild(id)
	if err != nil {
		apiError(w, api.statusOf(err), "build %s: %v", id, err)
		return
	}
	follow := r.URL.Query().Get("follow") != ""
	node := lastAttemptNode(b)
	if node == "" {
		apiError(w, http.StatusNotFound, "build %s has not started yet, so it has no log", id)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if node == api.cfg.Name {
		api.streamLocalLog(r.Context(), w, id, follow)
		return
	}
	rc, err := api.openRemoteLog(r.Context(), node, id, follow)
	if err != nil {
		apiError(w, http.StatusBadGateway, "log of %s on %s: %v", id, node, err)
		return
	}
	defer rc.Close()
	flushCopy(w, rc)
}

func lastAttemptNode(b *consensus.Build) string {
	if len(b.Attempts) > 0 {
		return b.Attempts[len(b.Attempts)-1].Node
	}
	return ""
}

// streamLocalLog copies a local log; with follow it keeps copying while
// the build runs here.
func (api *API) streamLocalLog(ctx context.Context, w http.ResponseWriter, id string, follow bool) {
	f, err := os.Open(api.jobs.LogPath(id))
	if err != nil {
		apiError(w, http.StatusNotFound, "no log for build %s on this node", id)
		return
	}
	defer f.Close()
	for {
		flushCopy(w, f)
		if !follow || !api.jobs.IsRunning(id) {
			flushCopy(w, f)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func flushCopy(w http.ResponseWriter, r io.Reader) {
	buf := make([]byte, 32<<10)
	fl, _ := w.(http.Flusher)
	for {
		k, err := r.Read(buf)
		if k > 0 {
			if _, werr := w.Write(buf[:k]); werr != nil {
				return
			}
			if fl != nil {
				fl.Flush()
			}
		}
		if err != nil {
			return
		}
	}
}

// openRemoteLog opens a build's log on the node that ran it, through
// that node's cluster port: never from a URL built of the replicated
// record's text.
func (api *API) openRemoteLog(ctx context.Context, node, id string, follow bool) (io.ReadCloser, error) {
	return api.jobs.RemoteLog(ctx, node, id, follow)
}

// OpenDrvLog serves /log/<drv>: the log of the derivation's newest build
// that has one.
func (api *API) OpenDrvLog(ctx context.Context, drvBase string) (io.ReadCloser, error) {
	bs, err := api.raft.State().BuildsByDerivation(api.cfg.StoreDir + "/" + drvBase)
	if err != nil || len(bs) == 0 {
		return nil, fmt.Errorf("%w: no build of %s", consensus.ErrNotFound, drvBase)
	}
	for i := len(bs) - 1; i >= 0; i-- {
		b := bs[i]
		node := lastAttemptNode(b)
		if node == "" {
			continue
		}
		if node == api.cfg.Name {
			if f, err := os.Open(api.jobs.LogPath(b.ID)); err == nil {
				return f, nil
			}
			continue
		}
		if rc, err := api.openRemoteLog(ctx, node, b.ID, false); err == nil {
			return rc, nil
		}
	}
	return nil, fmt.Errorf("%w: no log of %s", consensus.ErrNotFound, drvBase)
}
