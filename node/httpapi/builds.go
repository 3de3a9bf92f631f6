package httpapi

import (
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/drvmesh/drvmesh/consensus"
)

// The build list answers a page at a time: a history of millions of
// builds must not go out in one answer, nor be read whole to filter it.
const (
	// DefaultBuildsLimit is the page size of GET /api/v1/builds without
	// ?limit; MaxBuildsLimit the largest ?limit taken.
	DefaultBuildsLimit = 100
	MaxBuildsLimit     = 1000
	// buildsBatch is how many records one scan step reads: a filter the
	// index cannot answer walks the history a batch at a time, keeping
	// only what matches.
	buildsBatch = 256
	// NextCursorHeader names the id to pass as ?after= for the next page;
	// it is absent on the last page, which is also the only one shorter
	// than the limit.
	NextCursorHeader = "X-Next-Cursor"
)

// buildQuery is a parsed GET /api/v1/builds.
type buildQuery struct {
	state, system, node, drv string
	tags                     []string
	after                    string // only builds older than this id
	limit                    int
}

func parseBuildQuery(q url.Values) (buildQuery, string) {
	bq := buildQuery{
		state: q.Get("state"), system: q.Get("system"), node: q.Get("node"),
		drv: q.Get("derivation"), tags: q["tag"], after: q.Get("after"), limit: DefaultBuildsLimit,
	}
	if s := q.Get("limit"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 || v > MaxBuildsLimit {
			return bq, "limit must be a whole number from 1 to " + strconv.Itoa(MaxBuildsLimit) + "; page with ?after=<the " + NextCursorHeader + " header>"
		}
		bq.limit = v
	}
	if bq.state != "" && !slices.Contains(consensus.States, bq.state) {
		return bq, "unknown state " + strconv.Quote(bq.state)
	}
	for _, t := range bq.tags {
		if !strings.Contains(t, "=") {
			return bq, "tag " + strconv.Quote(t) + " is not key=value"
		}
	}
	if bq.after != "" && !isBuildID(bq.after) {
		return bq, "after must be a build id"
	}
	return bq, ""
}

func isBuildID(s string) bool {
	if len(s) != 32 {
		return false
	}
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// match reports whether b passes the filters the index scan did not.
func (bq *buildQuery) match(b *consensus.Build) bool {
	if bq.state != "" && b.State != bq.state || bq.system != "" && b.System != bq.system ||
		bq.node != "" && b.Node != bq.node || bq.drv != "" && b.Derivation != bq.drv {
		return false
	}
	for _, t := range bq.tags {
		k, v, _ := strings.Cut(t, "=")
		if b.Tags[k] != v {
			return false
		}
	}
	return true
}

// listBuilds returns a page of builds newest first and the cursor of the
// next page ("" on the last).
func (api *API) listBuilds(bq buildQuery) ([]*consensus.Build, string, error) {
	st := api.raft.State()
	if bq.drv != "" {
		return api.listByDerivation(bq)
	}
	flt := consensus.BuildFilter{State: bq.state, Before: bq.after, Limit: buildsBatch}
	if len(bq.tags) > 0 {
		flt.Tag = bq.tags[0]
	}
	var out []*consensus.Build
	for {
		bs, err := st.ListBuilds(flt)
		if err != nil {
			return nil, "", err
		}
		for _, b := range bs {
			if bq.match(b) {
				out = append(out, b)
				if len(out) == bq.limit {
					return out, b.ID, nil
				}
			}
		}
		if len(bs) < buildsBatch {
			return out, "", nil
		}
		flt.Before = bs[len(bs)-1].ID
	}
}

// listByDerivation pages through the builds of one derivation, which its
// index holds in full.
func (api *API) listByDerivation(bq buildQuery) ([]*consensus.Build, string, error) {
	bs, err := api.raft.State().BuildsByDerivation(bq.drv)
	if err != nil {
		return nil, "", err
	}
	slices.SortFunc(bs, func(a, b *consensus.Build) int { return strings.Compare(b.ID, a.ID) })
	var out []*consensus.Build
	for _, b := range bs {
		if bq.after != "" && b.ID >= bq.after || !bq.match(b) {
			continue
		}
		out = append(out, b)
		if len(out) == bq.limit {
			return out, b.ID, nil
		}
	}
	return out, "", nil
}

// handleListBuilds serves GET /api/v1/builds: a JSON array of at most
// ?limit builds, newest first, filtered by state, tag (all given must
// match), system, node and derivation. When more may follow, the
// X-Next-Cursor header holds the ?after= of the next page and a Link
// header its URL.
func (api *API) handleListBuilds(w http.ResponseWriter, r *http.Request) {
	bq, msg := parseBuildQuery(r.URL.Query())
	if msg != "" {
		apiError(w, http.StatusBadRequest, "%s", msg)
		return
	}
	if err := api.fresh(r); err != nil {
		apiError(w, http.StatusServiceUnavailable, "fresh read: %v", err)
		return
	}
	bs, next, err := api.listBuilds(bq)
	if err != nil {
		apiError(w, api.statusOf(err), "%v", err)
		return
	}
	if next != "" {
		q := r.URL.Query()
		q.Set("after", next)
		w.Header().Set(NextCursorHeader, next)
		w.Header().Set("Link", "<"+r.URL.Path+"?"+q.Encode()+`>; rel="next"`)
	}
	writeJSON(w, http.StatusOK, buildsJSON(bs))
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
