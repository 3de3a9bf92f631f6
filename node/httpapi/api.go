package httpapi

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
	"github.com/drvmesh/drvmesh/store"
)

// Handler is the public HTTP surface: the JSON API under /api/v1/, the
// join endpoint, the web page, /metrics, and the binary cache for
// everything else.
func (api *API) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/status", api.handleStatus)
	mux.HandleFunc("GET /api/v1/nodes", api.handleNodes)
	mux.HandleFunc("GET /api/v1/key", api.handleKey)
	mux.HandleFunc("GET /signing-key.pub", api.handleGuixKey)
	mux.Handle("POST /api/v1/join", api.cfg.Join)
	mux.HandleFunc("GET /api/v1/digest", api.admin(api.handleDigest))
	mux.HandleFunc("GET /api/v1/builds", api.handleListBuilds)
	mux.HandleFunc("POST /api/v1/builds", api.admin(api.handleSubmit))
	mux.HandleFunc("GET /api/v1/builds/{id}", api.handleShowBuild)
	mux.HandleFunc("GET /api/v1/builds/{id}/log", api.handleBuildLog)
	mux.HandleFunc("POST /api/v1/cancel", api.admin(api.handleCancel))
	mux.HandleFunc("POST /api/v1/paths/missing", api.handleMissing)
	mux.HandleFunc("PUT /api/v1/nars", api.admin(api.handleUploadNar))
	mux.HandleFunc("POST /api/v1/nars/import", api.admin(api.handleImportNars))
	mux.Handle("GET /metrics", api.cfg.Metrics)
	mux.HandleFunc("GET /{$}", api.handleWeb)
	mux.Handle("/", api.cfg.Cache)
	return mux
}

// admin guards a write endpoint with the admin token.
func (api *API) admin(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tok := strings.TrimSpace(strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "))
		st, err := api.raft.State().Settings()
		if err != nil || st.AdminTokenHash == "" {
			apiError(w, http.StatusServiceUnavailable, "the mesh is not ready yet; try again")
			return
		}
		if tok == "" || subtle.ConstantTimeCompare([]byte(api.cfg.TokenHash(tok)), []byte(st.AdminTokenHash)) != 1 {
			apiError(w, http.StatusUnauthorized, "wrong or missing admin token")
			return
		}
		h(w, r)
	}
}

// StatusJSON is what GET /api/v1/status answers.
type StatusJSON struct {
	Node        string   `json:"node"`
	Leader      string   `json:"leader"`
	Term        uint64   `json:"term"`
	CommitIndex uint64   `json:"commit_index"`
	Voters      []string `json:"voters"`
	Nonvoters   []string `json:"nonvoters"`
	Queued      int      `json:"queued"`
	Running     int      `json:"running"`
}

// Status is what GET /api/v1/status answers.
func (api *API) Status() StatusJSON {
	term, commit, _ := api.raft.Stats()
	leader, _ := api.raft.Leader()
	out := StatusJSON{Node: api.cfg.Name, Leader: leader, Term: term, CommitIndex: commit, Voters: []string{}, Nonvoters: []string{}}
	if servers, err := api.raft.Servers(); err == nil {
		for _, s := range servers {
			if s.Voter {
				out.Voters = append(out.Voters, s.ID)
			} else {
				out.Nonvoters = append(out.Nonvoters, s.ID)
			}
		}
	}
	if c, err := api.raft.State().Counts(); err == nil {
		out.Queued = c[consensus.StateQueued]
		out.Running = c[consensus.StateScheduled] + c[consensus.StateBuilding]
	}
	return out
}

func (api *API) handleStatus(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, api.Status())
}

// NodeJSON is one node of GET /api/v1/nodes.
type NodeJSON struct {
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
func (api *API) nodesView() []NodeJSON {
	recs, _ := api.raft.State().Nodes()
	roles := map[string]string{}
	if servers, err := api.raft.Servers(); err == nil {
		for _, s := range servers {
			roles[s.ID] = "nonvoter"
			if s.Voter {
				roles[s.ID] = "voter"
			}
		}
	}
	if leader, _ := api.raft.Leader(); leader != "" {
		roles[leader] = "leader"
	}
	members := map[string]gossip.Member{}
	for _, m := range api.members.Members() {
		members[m.Name] = m
	}
	var out []NodeJSON
	seen := map[string]bool{}
	add := func(name, httpAddr string) {
		seen[name] = true
		nj := NodeJSON{Name: name, Status: "dead", Raft: "none", HTTP: httpAddr, Systems: []string{}, Features: []string{}}
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

func (api *API) handleNodes(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, api.nodesView())
}

func (api *API) handleKey(w http.ResponseWriter, r *http.Request) {
	out := map[string]string{"nix": api.cfg.PublicKey}
	if api.cfg.Guix != nil {
		out["guix"] = string(api.cfg.Guix.PublicKeyText())
	}
	writeJSON(w, http.StatusOK, out)
}

func (api *API) handleGuixKey(w http.ResponseWriter, r *http.Request) {
	if api.cfg.Guix == nil {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	_, _ = w.Write(api.cfg.Guix.PublicKeyText())
}

// fresh makes a read linearizable when the caller asks (?fresh=1): the
// node waits until it has applied everything the leader had committed.
func (api *API) fresh(r *http.Request) error {
	if r.URL.Query().Get("fresh") == "" {
		return nil
	}
	return api.apply.CatchUpWithLeader(r.Context())
}

func (api *API) handleListBuilds(w http.ResponseWriter, r *http.Request) {
	if err := api.fresh(r); err != nil {
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
	bs, err := api.raft.State().ListBuilds(flt)
	if err != nil {
		apiError(w, api.statusOf(err), "%v", err)
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

func (api *API) handleShowBuild(w http.ResponseWriter, r *http.Request) {
	if err := api.fresh(r); err != nil {
		apiError(w, http.StatusServiceUnavailable, "fresh read: %v", err)
		return
	}
	b, err := api.raft.State().GetBuild(r.PathValue("id"))
	if err != nil {
		apiError(w, api.statusOf(err), "build %s: %v", r.PathValue("id"), err)
		return
	}
	writeJSON(w, http.StatusOK, b)
}

func (api *API) handleCancel(w http.ResponseWriter, r *http.Request) {
	var req struct {
		IDs []string `json:"ids"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil || len(req.IDs) == 0 {
		apiError(w, http.StatusBadRequest, "want {\"ids\": [...]}")
		return
	}
	if _, err := api.apply.ApplyAndCatchUp(r.Context(), &consensus.CancelBuilds{IDs: req.IDs}); err != nil {
		apiError(w, api.statusOf(err), "cancel: %v", err)
		return
	}
	writeJSON(w, http.StatusOK, map[string][]string{"canceled": req.IDs})
}

func (api *API) handleMissing(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Paths []string `json:"paths"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<20)).Decode(&req); err != nil {
		apiError(w, http.StatusBadRequest, "want {\"paths\": [...]}")
		return
	}
	for _, p := range req.Paths {
		if _, err := store.ParseStorePath(api.cfg.StoreDir, p); err != nil {
			apiError(w, http.StatusBadRequest, "%v", err)
			return
		}
	}
	missing, err := api.raft.State().MissingPaths(req.Paths)
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
func (api *API) statusOf(err error) int {
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
	case errors.Is(err, api.cfg.NoLeader), errors.As(err, &nl), errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}
