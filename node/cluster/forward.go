package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/hashicorp/raft"

	"github.com/drvmesh/drvmesh/consensus"
	"github.com/drvmesh/drvmesh/internal/httplimit"
)

// Writes may arrive at any node; only the leader applies them. A
// Forwarder sends a command to raft here when this node leads, and
// otherwise forwards it over the cluster port to the leader, retrying
// while an election is under way.

// Forwarder applies commands through the leader and serves the leader's
// side of forwarding (/rpc/apply, /rpc/index). Its callers write through
// an Applier (As), which names the role they issue commands in.
type Forwarder struct {
	raft *consensus.Raft
	rpc  *http.Client
	name string // this node's name, the issuer of its own commands
	log  *slog.Logger
	// refusals logs a refused forwarded command once a minute per
	// sending node.
	refusals *httplimit.Rate
}

// NewForwarder forwards the commands of the node named name over rpc, a
// client of the cluster port. Commands are applied through the role an
// Applier binds (As).
func NewForwarder(r *consensus.Raft, rpc *http.Client, name string, log *slog.Logger) *Forwarder {
	return &Forwarder{raft: r, rpc: rpc, name: name, log: log, refusals: httplimit.NewRate(1, time.Minute, maxSources)}
}

// Routes adds the leader's side of forwarding to the cluster port's mux.
func (f *Forwarder) Routes(mux *http.ServeMux) {
	mux.HandleFunc("POST /rpc/apply", f.handleApply)
	mux.HandleFunc("GET /rpc/index", f.handleIndex)
}

// applyResult is the wire form of a command's result: every result type
// of consensus carries a list of build ids.
type applyResult struct {
	IDs   []string `json:"ids,omitempty"`
	Index uint64   `json:"index,omitempty"` // the leader's applied index after the command
	Error string   `json:"error,omitempty"`
	Kind  string   `json:"kind,omitempty"`
}

// errorKinds maps consensus sentinels to names that cross the wire, in
// the order they are tried: an error may wrap more than one (a stale
// report is both a bad transition and unauthorized), and the first match
// names it.
var errorKinds = []struct {
	kind string
	err  error
}{
	{"not_found", consensus.ErrNotFound},
	{"bad_transition", consensus.ErrBadTransition},
	{"unauthorized", consensus.ErrUnauthorized},
	{"bad_command", consensus.ErrBadCommand},
	{"outputs_missing", consensus.ErrOutputsMissing},
	// The outcome is unknown: apply retries idempotent commands.
	{"leadership_lost", raft.ErrLeadershipLost},
}

func errorKind(err error) string {
	for _, k := range errorKinds {
		if errors.Is(err, k.err) {
			return k.kind
		}
	}
	return ""
}

// errorOfKind is the sentinel a wire kind names, or nil.
func errorOfKind(kind string) error {
	for _, k := range errorKinds {
		if k.kind == kind {
			return k.err
		}
	}
	return nil
}

func (f *Forwarder) applyWith(ctx context.Context, cmd consensus.Command, role Role, readYourWrites bool) ([]string, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
	}
	wait := 20 * time.Millisecond
	for {
		ids, err := f.applyOnce(ctx, cmd, role, readYourWrites)
		if err == nil {
			return ids, nil
		}
		if !retryable(err) && !(consensus.Idempotent(cmd) && errors.Is(err, raft.ErrLeadershipLost)) {
			return ids, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: %v", ErrNoLeader, err)
		case <-time.After(wait):
		}
		if wait < 500*time.Millisecond {
			wait *= 2
		}
	}
}

// retryable errors are those of a mesh between leaders.
func retryable(err error) bool {
	var nl *consensus.NotLeaderError
	return errors.As(err, &nl) || errors.Is(err, ErrNoLeader) || errors.Is(err, errForward)
}

func (f *Forwarder) applyOnce(ctx context.Context, cmd consensus.Command, role Role, readYourWrites bool) ([]string, error) {
	if f.raft.IsLeader() {
		st := f.raft.State()
		if err := st.Authorize(cmd, localPrincipal(st, f.name, role)); err != nil {
			return nil, err
		}
		res, err := f.raft.Apply(ctx, cmd)
		return consensus.ResultIDs(res), err
	}
	if role == RoleLeader {
		// The leader's role is never forwarded: this node no longer
		// leads, and its loops end with the term.
		return nil, fmt.Errorf("apply %s as the leader: %w", cmd.Type(), consensus.ErrNotLeader)
	}
	_, addr := f.raft.Leader()
	if addr == "" {
		return nil, ErrNoLeader
	}
	data, err := consensus.EncodeCommand(cmd, time.Time{})
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/rpc/apply", bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	req.Header.Set(headerRole, role.String())
	resp, err := f.rpc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errForward, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if resp.StatusCode == http.StatusServiceUnavailable {
		return nil, fmt.Errorf("%w: %s", errForward, body)
	}
	var ar applyResult
	if err := json.Unmarshal(body, &ar); err != nil {
		return nil, fmt.Errorf("%w: leader answered %s: %s", errForward, resp.Status, bytes.TrimSpace(body))
	}
	// Read your writes: what this node serves next must include the
	// command, so wait until it is applied here too.
	if readYourWrites {
		if err := f.CatchUp(ctx, ar.Index); err != nil {
			return ar.IDs, err
		}
	}
	if ar.Error != "" {
		if e := errorOfKind(ar.Kind); e != nil {
			return ar.IDs, fmt.Errorf("%w: %s", e, ar.Error)
		}
		return ar.IDs, errors.New(ar.Error)
	}
	return ar.IDs, nil
}

// handleApply is the leader's side of forwarding: it applies a command
// only when the issuer it builds from the caller's certificate and
// claimed role may issue it (FSM.Authorize). A refusal is 403 (400 for
// content out of bounds) with the reason and its kind.
func (f *Forwarder) handleApply(w http.ResponseWriter, r *http.Request) {
	data, err := io.ReadAll(io.LimitReader(r.Body, 64<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	cmd, err := consensus.DecodeCommand(data)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, applyResult{Error: err.Error(), Kind: "bad_command"})
		return
	}
	if !f.raft.IsLeader() {
		http.Error(w, "not the leader", http.StatusServiceUnavailable)
		return
	}
	st := f.raft.State()
	p, err := peerPrincipal(st, r)
	if err == nil {
		err = st.Authorize(cmd, p)
	}
	if err != nil {
		code := http.StatusForbidden
		if errors.Is(err, consensus.ErrBadCommand) {
			code = http.StatusBadRequest
		}
		f.noteRefusal(r, err)
		writeJSON(w, code, applyResult{Error: err.Error(), Kind: errorKind(err)})
		return
	}
	res, err := f.raft.Apply(r.Context(), cmd)
	// The state's own index: raft's may count entries the state has not
	// applied yet, and may end on a configuration entry the state never sees.
	out := applyResult{IDs: consensus.ResultIDs(res), Index: f.raft.State().AppliedIndex()}
	if err != nil {
		var nl *consensus.NotLeaderError
		if errors.As(err, &nl) {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		out.Error, out.Kind = err.Error(), errorKind(err)
	}
	writeJSON(w, http.StatusOK, out)
}

// noteRefusal logs a forwarded command the leader refused, once a minute
// per sending node: a stale report of a build that moved on (a bad
// transition too) is part of a mesh's life and is not logged.
func (f *Forwarder) noteRefusal(r *http.Request, err error) {
	if errors.Is(err, consensus.ErrBadTransition) {
		return
	}
	from := r.RemoteAddr
	if c := peerCert(r); c != nil {
		from = c.Subject.CommonName
	}
	if ok, _ := f.refusals.Allow(from); ok {
		f.log.Warn("forwarded command refused", keyMember, from, keyErr, err)
	}
}

// CatchUp waits until this node's state includes raft index idx.
// Raft's applied index counts entries handed to the state, which may not
// have applied them yet, so it then waits for the state's own index too.
// That second wait is bounded: after a snapshot install the state is
// current while its index stays behind until the next entry.
func (f *Forwarder) CatchUp(ctx context.Context, idx uint64) error {
	st := f.raft.State()
	if f.raft.AppliedIndex() >= idx && st.AppliedIndex() >= idx {
		return nil
	}
	changes, unsub := f.raft.Subscribe()
	defer unsub()
	var caughtUp time.Time
	for st.AppliedIndex() < idx {
		if caughtUp.IsZero() && f.raft.AppliedIndex() >= idx {
			caughtUp = time.Now()
		}
		if !caughtUp.IsZero() && time.Since(caughtUp) > time.Second {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for the local state to catch up: %w", ctx.Err())
		case <-changes:
		case <-time.After(5 * time.Millisecond):
		}
	}
	return nil
}

// Index is a node's raft commit index and the index it has applied.
type Index struct {
	Commit  uint64 `json:"commit"`
	Applied uint64 `json:"applied"`
}

func (f *Forwarder) handleIndex(w http.ResponseWriter, r *http.Request) {
	_, commit, applied := f.raft.Stats()
	writeJSON(w, http.StatusOK, Index{Commit: commit, Applied: applied})
}

// RemoteIndex asks the node whose cluster port is addr for its indexes.
func (f *Forwarder) RemoteIndex(ctx context.Context, addr string) (Index, error) {
	var ix Index
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/rpc/index", nil)
	if err != nil {
		return ix, err
	}
	resp, err := f.rpc.Do(req)
	if err != nil {
		return ix, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return ix, fmt.Errorf("index of %s: %s", addr, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&ix); err != nil {
		return ix, fmt.Errorf("index of %s: %w", addr, err)
	}
	return ix, nil
}

// CatchUpWithLeader makes a read linearizable: it returns once this node
// has applied everything the leader had committed when asked.
func (f *Forwarder) CatchUpWithLeader(ctx context.Context) error {
	if f.raft.IsLeader() {
		return f.raft.Barrier(ctx)
	}
	_, addr := f.raft.Leader()
	if addr == "" {
		return ErrNoLeader
	}
	ix, err := f.RemoteIndex(ctx, addr)
	if err != nil {
		return fmt.Errorf("%w: the leader's commit index: %v", ErrNoLeader, err)
	}
	return f.CatchUp(ctx, ix.Commit)
}
