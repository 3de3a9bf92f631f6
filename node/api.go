package node

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"

	"github.com/drvmesh/drvmesh/consensus"
	"github.com/drvmesh/drvmesh/gossip"
	"github.com/drvmesh/drvmesh/node/cluster"
	"github.com/drvmesh/drvmesh/store"
)

// httpHandler is the public HTTP surface: the JSON API under /api/v1/,
// the web page, /metrics, and the binary cache for everything else.
func (n *Node) httpHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/status", n.handleStatus)
	mux.HandleFunc("GET /api/v1/nodes", n.handleNodes)
	mux.HandleFunc("GET /api/v1/key", n.handleKey)
	mux.HandleFunc("GET /signing-key.pub", n.handleGuixKey)
	mux.Handle("POST /api/v1/join", cluster.NewJoinServer(n.creds, n.raft.State, n.fwd, n.peers, n.log))
	mux.HandleFunc("GET /api/v1/builds", n.handleListBuilds)
	mux.HandleFunc("POST /api/v1/builds", n.admin(n.handleSubmit))
	mux.HandleFunc("GET /api/v1/builds/{id}", n.handleShowBuild)
	mux.HandleFunc("GET /api/v1/builds/{id}/log", n.handleBuildLog)
	mux.HandleFunc("POST /api/v1/cancel", n.admin(n.handleCancel))
	mux.HandleFunc("POST /api/v1/paths/missing", n.handleMissing)
	mux.HandleFunc("PUT /api/v1/nars", n.admin(n.handleUploadNar))
	mux.HandleFunc("POST /api/v1/nars/import", n.admin(n.handleImportNars))
	mux.Handle("GET /metrics", n.metrics.handler())
	mux.HandleFunc("GET /{$}", n.handleWeb)
	mux.Handle("/", n.cache)
	return n.metrics.instrument(mux)
}

// admin guards a write endpoint with the admin token.
func (n *Node) admin(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tok := strings.TrimSpace(strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "))
		st, err := n.raft.State().Settings()
		if err != nil || st.AdminTokenHash == "" {
			apiError(w, http.StatusServiceUnavailable, "the mesh is not ready yet; try again")
			return
		}
		if tok == "" || subtle.ConstantTimeCompare([]byte(cluster.TokenHash(tok)), []byte(st.AdminTokenHash)) != 1 {
			apiError(w, http.StatusUnauthorized, "wrong or missing admin token")
			return
		}
		h(w, r)
	}
}

type statusJSON struct {
	Node        string   `json:"node"`
	Leader      string   `json:"leader"`
	Term        uint64   `json:"term"`
	CommitIndex uint64   `json:"commit_index"`
	Voters      []string `json:"voters"`
	Nonvoters   []string `json:"nonvoters"`
	Queued      int      `json:"queued"`
	Running     int      `json:"running"`
}

func (n *Node) status() statusJSON {
	term, commit, _ := n.raft.Stats()
	leader, _ := n.raft.Leader()
	out := statusJSON{Node: n.cfg.Name, Leader: leader, Term: term, CommitIndex: commit, Voters: []string{}, Nonvoters: []string{}}
	if servers, err := n.raft.Servers(); err == nil {
		for _, s := range servers {
			if s.Voter {
				out.Voters = append(out.Voters, s.ID)
			} else {
				out.Nonvoters = append(out.Nonvoters, s.ID)
			}
		}
	}
	if c, err := n.raft.State().Counts(); err == nil {
		out.Queued = c[consensus.StateQueued]
		out.Running = c[consensus.StateScheduled] + c[consensus.StateBuilding]
	}
	return out
}

func (n *Node) handleStatus(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, n.status())
}

type nodeJSON struct {
	Name     string   `json:"name"`
	Status   string   `json:"status"`
	Raft     string   `json:"raft"`
	Systems  []string `json:"systems"`
	Features []string `json:"features"`
	MaxJobs  int      `json:"max_jobs"`
	Running  int      `json:"running"`
	HTTP     string   `json:"http"`
	Load     float64  `json:"load"`
	FreeDisk uint64   `json:"free_disk"`
	P2P      string   `json:"p2p,omitempty"`
	Gossip   string   `json:"gossip,omitempty"`
}

// nodesView merges the admission records, gossip and the raft
// configuration into the SPEC's node list.
func (n *Node) nodesView() []nodeJSON {
	recs, _ := n.raft.State().Nodes()
	roles := map[string]string{}
	if servers, err := n.raft.Servers(); err == nil {
		for _, s := range servers {
			roles[s.ID] = "nonvoter"
			if s.Voter {
				roles[s.ID] = "voter"
			}
		}
	}
	if leader, _ := n.raft.Leader(); leader != "" {
		roles[leader] = "leader"
	}
	members := map[string]gossip.Member{}
	for _, m := range n.gossip.Members() {
		members[m.Name] = m
	}
	var out []nodeJSON
	seen := map[string]bool{}
	add := func(name, httpAddr string) {
		seen[name] = true
		nj := nodeJSON{Name: name, Status: "dead", Raft: "none", HTTP: httpAddr, Systems: []string{}, Features: []string{}}
		if r, ok := roles[name]; ok {
			nj.Raft = r
		}
		if m, ok := members[name]; ok {
			nj.Status = m.Status.String()
			nj.Systems, nj.Features = orEmpty(m.Meta.Systems), orEmpty(m.Meta.Features)
			nj.MaxJobs, nj.Running, nj.Load, nj.FreeDisk = m.Meta.MaxJobs, m.Meta.Running, m.Meta.Load, m.Meta.FreeDisk
			nj.P2P, nj.Gossip = m.Meta.P2P, m.Addr
			if m.Meta.HTTP != "" {
				nj.HTTP = m.Meta.HTTP
			}
		}
		out = append(out, nj)
	}
	for _, rec := range recs {
		add(rec.Name, rec.HTTP)
	}
	for name, m := range members {
		if !seen[name] {
			add(name, m.Meta.HTTP)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func (n *Node) handleNodes(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, n.nodesView())
}

func (n *Node) handleKey(w http.ResponseWriter, r *http.Request) {
	out := map[string]string{"nix": n.creds.Signer.Public().String()}
	if n.creds.Guix != nil {
		out["guix"] = string(n.creds.Guix.PublicKeyText())
	}
	writeJSON(w, http.StatusOK, out)
}

func (n *Node) handleGuixKey(w http.ResponseWriter, r *http.Request) {
	if n.creds.Guix == nil {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	_, _ = w.Write(n.creds.Guix.PublicKeyText())
}

// fresh makes a read linearizable when the caller asks (?fresh=1): the
// node waits until it has applied everything the leader had committed.
func (n *Node) fresh(r *http.Request) error {
	if r.URL.Query().Get("fresh") == "" {
		return nil
	}
	return n.fwd.CatchUpWithLeader(r.Context())
}

func (n *Node) handleListBuilds(w http.ResponseWriter, r *http.Request) {
	if err := n.fresh(r); err != nil {
		apiError(w, http.StatusServiceUnavailable, "fresh read: %v", err)
		return
	}
	q := r.URL.Query()
	limit := 50
	if s := q.Get("limit"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 0 {
			apiError(w, http.StatusBadRequest, "limit must be a whole number")
			return
		}
		limit = v
	}
	tags := q["tag"]
	flt := consensus.BuildFilter{State: q.Get("state"), Limit: limit}
	if len(tags) > 0 {
		flt.Tag = tags[0]
		flt.Limit = 0
	}
	bs, err := n.raft.State().ListBuilds(flt)
	if err != nil {
		apiError(w, statusOf(err), "%v", err)
		return
	}
	out := make([]*consensus.Build, 0, len(bs))
	for _, b := range bs {
		if matchTags(b, tags) {
			out = append(out, b)
			if limit > 0 && len(out) == limit {
				break
			}
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func matchTags(b *consensus.Build, tags []string) bool {
	for _, t := range tags {
		k, v, _ := strings.Cut(t, "=")
		if b.Tags[k] != v {
			return false
		}
	}
	return true
}

func (n *Node) handleShowBuild(w http.ResponseWriter, r *http.Request) {
	if err := n.fresh(r); err != nil {
		apiError(w, http.StatusServiceUnavailable, "fresh read: %v", err)
		return
	}
	b, err := n.raft.State().GetBuild(r.PathValue("id"))
	if err != nil {
		apiError(w, statusOf(err), "build %s: %v", r.PathValue("id"), err)
		return
	}
	writeJSON(w, http.StatusOK, b)
}

func (n *Node) handleCancel(w http.ResponseWriter, r *http.Request) {
	var req struct {
		IDs []string `json:"ids"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil || len(req.IDs) == 0 {
		apiError(w, http.StatusBadRequest, "want {\"ids\": [...]}")
		return
	}
	if _, err := n.apply(r.Context(), &consensus.CancelBuilds{IDs: req.IDs}); err != nil {
		apiError(w, statusOf(err), "cancel: %v", err)
		return
	}
	writeJSON(w, http.StatusOK, map[string][]string{"canceled": req.IDs})
}

func (n *Node) handleMissing(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Paths []string `json:"paths"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<20)).Decode(&req); err != nil {
		apiError(w, http.StatusBadRequest, "want {\"paths\": [...]}")
		return
	}
	for _, p := range req.Paths {
		if _, err := store.ParseStorePath(n.cfg.StoreDir, p); err != nil {
			apiError(w, http.StatusBadRequest, "%v", err)
			return
		}
	}
	missing, err := n.raft.State().MissingPaths(req.Paths)
	if err != nil {
		apiError(w, http.StatusInternalServerError, "%v", err)
		return
	}
	if missing == nil {
		missing = []string{}
	}
	writeJSON(w, http.StatusOK, map[string][]string{"missing": missing})
}

// statusOf maps an error to an HTTP status.
func statusOf(err error) int {
	var nl *consensus.NotLeaderError
	switch {
	case errors.Is(err, consensus.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, consensus.ErrBadCommand), errors.Is(err, ErrBadRequest),
		errors.Is(err, store.ErrBadDerivation), errors.Is(err, store.ErrBadNar),
		errors.Is(err, store.ErrBadStorePath), errors.Is(err, store.ErrBadHash):
		return http.StatusBadRequest
	case errors.Is(err, consensus.ErrBadTransition):
		return http.StatusConflict
	case errors.Is(err, ErrNoLeader), errors.As(err, &nl), errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}
