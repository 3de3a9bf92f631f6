package httpapi

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/drvmesh/drvmesh/consensus"
)

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
	writeJSON(w, http.StatusOK, buildsJSON(out))
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
	writeJSON(w, http.StatusOK, buildJSON(b))
}
