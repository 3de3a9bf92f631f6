package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	wire "github.com/drvmesh/drvmesh/api"
	"github.com/drvmesh/drvmesh/consensus"
	"github.com/drvmesh/drvmesh/store"
)

// maxBuildsPerEntry bounds one raft entry of a submission.
const maxBuildsPerEntry = 2000

// handleSubmit creates builds for derivations whose .drv files the mesh
// holds. Each .drv is read from the mesh and checked (its output paths
// must be the ones its inputs imply) before anything is recorded.
func (api *API) handleSubmit(w http.ResponseWriter, r *http.Request) {
	var req wire.SubmitRequest
	req.Retries = -1
	if err := json.NewDecoder(io.LimitReader(r.Body, 16<<20)).Decode(&req); err != nil {
		apiError(w, http.StatusBadRequest, "malformed submission: %v", err)
		return
	}
	if len(req.Derivations) == 0 {
		apiError(w, http.StatusBadRequest, "no derivations")
		return
	}
	res, err := api.submit(r.Context(), req)
	if err != nil {
		apiError(w, api.statusOf(err), "%v", err)
		return
	}
	writeJSON(w, http.StatusOK, wire.SubmitResponse{Builds: res})
}

// drvReader reads .drv files from the mesh, once each.
type drvReader struct {
	api   *API
	ctx   context.Context
	mu    sync.Mutex
	cache map[string][]byte
}

func (api *API) newDrvReader(ctx context.Context) *drvReader {
	return &drvReader{api: api, ctx: ctx, cache: map[string][]byte{}}
}

func (d *drvReader) load(p string) ([]byte, error) {
	d.mu.Lock()
	b, ok := d.cache[p]
	d.mu.Unlock()
	if ok {
		return b, nil
	}
	b, err := d.api.readDrv(d.ctx, p)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	d.cache[p] = b
	d.mu.Unlock()
	return b, nil
}

// readDrv returns the text of a .drv the mesh holds.
func (api *API) readDrv(ctx context.Context, p string) ([]byte, error) {
	hp, err := consensus.HashPart(p)
	if err != nil {
		return nil, fmt.Errorf("%w: %s", ErrBadRequest, p)
	}
	ni, err := api.raft.State().NarInfoByHash(hp)
	if err != nil || ni == nil || ni.StorePath != p {
		return nil, fmt.Errorf("%w: the mesh does not hold %s; upload it first (drvmesh submit does)", ErrBadRequest, p)
	}
	f, ok := api.copies.LocalFile(ni)
	if !ok {
		if err := api.copies.ReplicateLocal(ctx, hp); err != nil {
			return nil, fmt.Errorf("fetch %s from its holders: %w", p, err)
		}
		if f, ok = api.copies.LocalFile(ni); !ok {
			return nil, fmt.Errorf("%w: %s", consensus.ErrNotFound, p)
		}
	}
	rc, _, err := api.disk.OpenNar(f.Key())
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	nar, err := io.ReadAll(io.LimitReader(rc, maxDrvNar+1))
	if err != nil {
		return nil, err
	}
	if len(nar) > maxDrvNar {
		return nil, fmt.Errorf("%w: %s is too large for a .drv", ErrBadRequest, p)
	}
	return drvContent(nar)
}

// drvRecord parses a .drv, checks its output paths and makes its
// scheduling record.
func (api *API) drvRecord(p string, rd *drvReader, hasher *store.Hasher) (*consensus.Drv, error) {
	b, err := rd.load(p)
	if err != nil {
		return nil, err
	}
	d, err := store.ParseDerivation(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	name, err := store.DrvName(p)
	if err != nil {
		return nil, err
	}
	if err := hasher.CheckOutputPaths(d, api.cfg.StoreDir, name); err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	rec := &consensus.Drv{Path: p, System: d.Platform, InputDrvs: d.InputDrvs, InputSrcs: d.InputSrcs, Outputs: map[string]string{}}
	for _, o := range d.Outputs {
		rec.Outputs[o.Name] = o.Path
	}
	if f, ok := d.Getenv("requiredSystemFeatures"); ok {
		rec.Features = strings.Fields(f)
	}
	return rec, nil
}

// submit records builds for req and returns them, in the order of
// req.Derivations followed by the inputs --closure added.
func (api *API) submit(ctx context.Context, req wire.SubmitRequest) ([]wire.SubmittedBuild, error) {
	st := api.raft.State()
	rd := api.newDrvReader(ctx)
	hasher := store.NewHasher(rd.load)
	settings, _ := st.Settings()
	retries := req.Retries
	if retries < 0 {
		retries = settings.Retries
	}
	out := []wire.SubmittedBuild{}
	var builds []consensus.Build
	var drvs []consensus.Drv
	var skip []bool // closure inputs: only if no build of theirs is active
	var outAt []int // where each build is in out
	seen := map[string]bool{}
	now := time.Now().UTC()
	add := func(p string, rec *consensus.Drv, input bool) {
		skip = append(skip, input)
		builds = append(builds, consensus.Build{
			ID: consensus.NewBuildID(now), Derivation: p, System: rec.System, State: consensus.StateQueued,
			Priority: req.Priority, Tags: req.Tags, DeferUntil: req.DeferUntil, Retries: retries,
		})
		drvs = append(drvs, *rec)
		out = append(out, wire.SubmittedBuild{ID: builds[len(builds)-1].ID, Derivation: p})
		outAt = append(outAt, len(out)-1)
	}
	for _, p := range req.Derivations {
		if _, err := store.ParseStorePath(api.cfg.StoreDir, p); err != nil || !strings.HasSuffix(p, ".drv") {
			return nil, fmt.Errorf("%w: %q is not a .drv in %s", ErrBadRequest, p, api.cfg.StoreDir)
		}
		if seen[p] {
			continue
		}
		seen[p] = true
		rec, err := api.drvRecord(p, rd, hasher)
		if err != nil {
			return nil, err
		}
		if req.IgnoreIfBuilt {
			if b := st.LatestBuild(p, consensus.StateSucceeded); b != nil {
				out = append(out, wire.SubmittedBuild{ID: b.ID, Derivation: p})
				continue
			}
		}
		add(p, rec, false)
	}
	if req.Closure {
		var order []string
		for _, p := range req.Derivations {
			ds, _, err := store.DrvClosure(p, rd.load)
			if err != nil {
				return nil, err
			}
			order = append(order, ds...)
		}
		for _, p := range order {
			if seen[p] {
				continue
			}
			seen[p] = true
			rec, err := api.drvRecord(p, rd, hasher)
			if err != nil {
				return nil, err
			}
			if api.outputsPresent(rec) || st.LatestBuild(p, "") != nil && !latestFinished(st, p) {
				continue
			}
			add(p, rec, true)
		}
	}
	return api.record(ctx, builds, drvs, skip, out, outAt)
}

// record commits builds, maxBuildsPerEntry per entry, and returns out
// with the id apply kept for each (outAt: where each build is in out).
func (api *API) record(ctx context.Context, builds []consensus.Build, drvs []consensus.Drv, skip []bool, out []wire.SubmittedBuild, outAt []int) ([]wire.SubmittedBuild, error) {
	for i := 0; i < len(builds); i += maxBuildsPerEntry {
		j := min(i+maxBuildsPerEntry, len(builds))
		ids, err := api.apply.ApplyAndCatchUp(ctx, &consensus.SubmitBuilds{Builds: builds[i:j], Drvs: drvs[i:j], SkipIfActive: skip[i:j]})
		if err != nil {
			if i > 0 {
				return out[:outAt[i]], fmt.Errorf("recorded %d of %d builds: %w", i, len(builds), err)
			}
			return nil, err
		}
		// A closure input skipped in apply is named by its active build.
		for k, id := range ids {
			if i+k < j {
				out[outAt[i+k]].ID = id
			}
		}
	}
	return out, nil
}

// outputsPresent reports whether the mesh holds every output of a drv.
func (api *API) outputsPresent(rec *consensus.Drv) bool {
	var paths []string
	for _, p := range rec.Outputs {
		paths = append(paths, p)
	}
	m, err := api.raft.State().MissingPaths(paths)
	return err == nil && len(m) == 0
}

// latestFinished reports whether a derivation's newest build failed or
// was canceled (so a new one may be made).
func latestFinished(st *consensus.FSM, drv string) bool {
	b := st.LatestBuild(drv, "")
	return b != nil && (b.State == consensus.StateFailed || b.State == consensus.StateCanceled)
}

// DrvReader returns a reader of derivation records the mesh holds: each
// .drv is read and its output paths checked once per reader.
func (api *API) DrvReader(ctx context.Context) func(drv string) (*consensus.Drv, error) {
	rd := api.newDrvReader(ctx)
	hasher := store.NewHasher(rd.load)
	return func(p string) (*consensus.Drv, error) { return api.drvRecord(p, rd, hasher) }
}

// Submit records builds for derivations the mesh holds, with the mesh's
// default retries, and returns how many it recorded.
func (api *API) Submit(ctx context.Context, drvs []string) (int, error) {
	res, err := api.submit(ctx, wire.SubmitRequest{Derivations: drvs, Retries: -1})
	return len(res), err
}
