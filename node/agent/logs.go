package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/drvmesh/drvmesh/consensus"
)

// The log of a build lives on the node that ran it. Other nodes fetch it
// from that node over the cluster port (GET /rpc/log/{id}, mutual TLS),
// never from an address built of replicated text.

// Routes adds the agent's node-to-node routes to the cluster port's mux.
func (a *Agent) Routes(mux *http.ServeMux) {
	mux.HandleFunc("GET /rpc/log/{id}", a.handleLog)
}

// handleLog serves the log of a build run here; with ?follow=1 it keeps
// serving while the build runs.
func (a *Agent) handleLog(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !safeID(id) {
		http.Error(w, "malformed build id", http.StatusBadRequest)
		return
	}
	f, err := os.Open(a.LogPath(id))
	if err != nil {
		http.Error(w, "no log for build "+id+" on this node", http.StatusNotFound)
		return
	}
	defer f.Close()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	follow := r.URL.Query().Get("follow") != ""
	streamLog(r.Context(), w, f, func() bool { return follow && a.IsRunning(id) })
}

// streamLog copies f to w, flushing, and again every 100 ms while more
// says so.
func streamLog(ctx context.Context, w http.ResponseWriter, f io.Reader, more func() bool) {
	fl, _ := w.(http.Flusher)
	for {
		if _, err := io.Copy(w, f); err != nil {
			return
		}
		if fl != nil {
			fl.Flush()
		}
		if !more() {
			_, _ = io.Copy(w, f)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// errBadAddr: a node's recorded cluster address is not host:port.
var errBadAddr = errors.New("recorded cluster address is not host:port")

// RemoteLog opens the log of build id on the node named node, over the
// cluster port (mutual TLS: only a member answers); with follow it
// streams while the build runs there. The node's recorded cluster
// address must be a plain host:port.
func (a *Agent) RemoteLog(ctx context.Context, node, id string, follow bool) (io.ReadCloser, error) {
	rec, err := a.raft.State().Node(node)
	if err != nil || rec == nil {
		return nil, fmt.Errorf("%w: node %s", consensus.ErrNotFound, node)
	}
	if err := checkHostPort(rec.Raft); err != nil {
		return nil, fmt.Errorf("log of %s on %s: %w", id, node, err)
	}
	u := "http://" + rec.Raft + "/rpc/log/" + url.PathEscape(id)
	if follow {
		u += "?follow=1"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	// A followed log streams for as long as the build runs: ctx bounds it.
	client := *a.cfg.RPC
	client.Timeout = 0
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("%w: %s", consensus.ErrNotFound, resp.Status)
	}
	return resp.Body, nil
}

// checkHostPort refuses an address that is not host:port with a numeric
// port: no scheme, path, query or user.
func checkHostPort(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" || strings.ContainsAny(host, "/?#@ \t\r\n%") {
		return fmt.Errorf("%w: %q", errBadAddr, addr)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("%w: %q", errBadAddr, addr)
	}
	return nil
}

// safeID reports whether id may name a file: letters, digits, '-' and
// '_' only, as the ids the mesh makes.
func safeID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
