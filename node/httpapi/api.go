package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"sort"

	wire "github.com/drvmesh/drvmesh/api"
	"github.com/drvmesh/drvmesh/consensus"
	"github.com/drvmesh/drvmesh/gossip"
	"github.com/drvmesh/drvmesh/store"
)

// Handler is the public HTTP surface: the JSON API under /api/v1/, the
// join endpoint, the web page, /metrics, and the binary cache for
// everything else.
func (api *API) Handler() http.Handler {
	mux := http.NewServeMux()
	// Public: readiness and the binary cache with its keys (see PublicRead).
	mux.HandleFunc("GET /api/v1/status", api.handleStatus)
	mux.HandleFunc("GET /api/v1/key", api.handleKey)
	mux.HandleFunc("GET /signing-key.pub", api.handleGuixKey)
	mux.Handle("POST /api/v1/join", api.cfg.Join) // proves a join token itself
	mux.Handle("/", api.cfg.Cache)
	// Reads that need the admin token unless --public-read all.
	mux.HandleFunc("GET /api/v1/nodes", api.reader(http.HandlerFunc(api.handleNodes)))
	mux.HandleFunc("GET /api/v1/builds", api.reader(http.HandlerFunc(api.handleListBuilds)))
	mux.HandleFunc("GET /api/v1/builds/{id}", api.reader(http.HandlerFunc(api.handleShowBuild)))
	mux.HandleFunc("GET /api/v1/builds/{id}/log", api.reader(http.HandlerFunc(api.handleBuildLog)))
	mux.HandleFunc("GET /log/", api.reader(api.cfg.Cache))
	mux.HandleFunc("GET /metrics", api.reader(api.cfg.Metrics))
	mux.HandleFunc("GET /{$}", api.reader(http.HandlerFunc(api.handleWeb)))
	// Writes, and the missing-path query (which reads a large body).
	mux.HandleFunc("GET /api/v1/digest", api.admin(api.handleDigest))
	mux.HandleFunc("POST /api/v1/builds", api.admin(api.handleSubmit))
	mux.HandleFunc("POST /api/v1/cancel", api.admin(api.handleCancel))
	mux.HandleFunc("POST /api/v1/paths/missing", api.admin(api.handleMissing))
	mux.HandleFunc("PUT /api/v1/nars", api.admin(api.handleUploadNar))
	mux.HandleFunc("POST /api/v1/nars/import", api.admin(api.handleImportNars))
	return mux
}

// Status is what GET /api/v1/status answers.
func (api *API) Status() wire.Status {
	term, commit, _ := api.raft.Stats()
	leader, _ := api.raft.Leader()
	out := wire.Status{Node: api.cfg.Name, Leader: leader, Term: term, CommitIndex: commit, Voters: []string{}, Nonvoters: []string{}}
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

// nodesView merges the admission records, gossip and the raft
// configuration into the contract's node list (docs/contract.md).
func (api *API) nodesView() []wire.Node {
	recs, _ := api.raft.State().Nodes()
	roles := map[string]wire.RaftRole{}
	if servers, err := api.raft.Servers(); err == nil {
		for _, s := range servers {
			roles[s.ID] = wire.RaftNonvoter
			if s.Voter {
				roles[s.ID] = wire.RaftVoter
			}
		}
	}
	if leader, _ := api.raft.Leader(); leader != "" {
		roles[leader] = wire.RaftLeader
	}
	members := map[string]gossip.Member{}
	for _, m := range api.members.Members() {
		members[m.Name] = m
	}
	var out []wire.Node
	seen := map[string]bool{}
	add := func(name, httpAddr string) {
		seen[name] = true
		nj := wire.Node{Name: name, Status: wire.NodeDead, Raft: wire.RaftNone, HTTP: httpAddr, Systems: []string{}, Features: []string{}}
		if r, ok := roles[name]; ok {
			nj.Raft = r
		}
		if m, ok := members[name]; ok {
			nj.Status = wire.NodeStatus(m.Status.String())
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

// ServeNodes answers the node list, for the members' cluster port.
func (api *API) ServeNodes(w http.ResponseWriter, r *http.Request) { api.handleNodes(w, r) }

func (api *API) handleNodes(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, api.nodesView())
}

func (api *API) handleKey(w http.ResponseWriter, r *http.Request) {
	out := wire.Key{Nix: api.cfg.PublicKey}
	if api.cfg.Guix != nil {
		out.Guix = string(api.cfg.Guix.PublicKeyText())
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

func (api *API) handleCancel(w http.ResponseWriter, r *http.Request) {
	var req wire.CancelRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil || len(req.IDs) == 0 {
		apiError(w, http.StatusBadRequest, "want {\"ids\": [...]}")
		return
	}
	if _, err := api.apply.ApplyAndCatchUp(r.Context(), &consensus.CancelBuilds{IDs: req.IDs}); err != nil {
		apiError(w, api.statusOf(err), "cancel: %v", err)
		return
	}
	writeJSON(w, http.StatusOK, wire.CancelResponse{Canceled: req.IDs})
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
