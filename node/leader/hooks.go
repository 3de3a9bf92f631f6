package leader

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/drvmesh/drvmesh/consensus"
)

// Hooks run on the leader, once per event across the mesh: the events
// come from the replicated queue, and an event leaves the queue (AckEvents)
// only after its hook ran. On a graceful leader change the old leader
// finishes and acknowledges the hook it is running before it passes
// leadership on; if a leader dies in the middle of a hook, the next one
// runs it again (at least once, never lost).

const (
	hookTimeout    = 10 * time.Minute
	hookMaxBackoff = 5 * time.Minute
	// hookStopGrace is how long a running hook may go on once this node
	// stops leading.
	hookStopGrace = 5 * time.Second
)

// hookRunner runs the hooks of the replicated event queue while this node
// leads. It owns ran, the events whose hook ran here but whose
// acknowledgement did not commit: leading again, this node acknowledges
// them without running the hook a second time.
type hookRunner struct {
	cfg   Config
	raft  Raft
	apply Applier
	log   *slog.Logger
	ran   map[uint64]bool
}

// handover is how long a new leader waits before it runs hooks, and
// how long a node that lost leadership keeps trying to acknowledge the
// hooks it ran (through the new leader): an event whose hook ran is then
// not run again by the next leader.
func (h *hookRunner) handover() time.Duration {
	d := 3 * time.Second
	if h.cfg.Fast {
		d = 500 * time.Millisecond
	}
	return time.Duration(float64(d) * h.cfg.Scale)
}

// run drains the event queue while this node leads.
func (h *hookRunner) run(ctx context.Context) {
	changes, unsub := h.raft.Subscribe()
	defer unsub()
	select {
	case <-ctx.Done():
		return
	case <-time.After(h.handover()):
	}
	retryAt := map[uint64]time.Time{}
	failures := map[uint64]int{}
	for {
		next := h.runHooks(ctx, retryAt, failures)
		wait := time.Minute
		if !next.IsZero() {
			wait = max(time.Until(next), 10*time.Millisecond)
		}
		select {
		case <-ctx.Done():
			return
		case <-changes:
		case <-time.After(wait):
		}
	}
}

// runHooks handles every pending event that is due and returns when the
// next retry is due (zero if none waits).
func (h *hookRunner) runHooks(ctx context.Context, retryAt map[uint64]time.Time, failures map[uint64]int) time.Time {
	evs, err := h.raft.State().PendingEvents(256)
	if err != nil {
		return time.Time{}
	}
	for seq := range h.ran {
		if len(evs) == 0 || seq < evs[0].Seq {
			delete(h.ran, seq) // acknowledged
		}
	}
	if len(evs) == 0 {
		return time.Time{}
	}
	var next time.Time
	var acks []uint64
	flush := func() { acks = h.ack(ctx, acks) }
	defer flush()
	for _, ev := range evs {
		if ctx.Err() != nil {
			return time.Time{}
		}
		if h.ran[ev.Seq] {
			acks = append(acks, ev.Seq) // ran in an earlier term
			continue
		}
		if t, ok := retryAt[ev.Seq]; ok && time.Now().Before(t) {
			if next.IsZero() || t.Before(next) {
				next = t
			}
			continue
		}
		err := h.runHook(ctx, ev)
		if err == nil {
			h.ran[ev.Seq] = true
			delete(retryAt, ev.Seq)
			delete(failures, ev.Seq)
			acks = append(acks, ev.Seq)
			if len(acks) >= 64 {
				flush()
			}
			continue
		}
		if ctx.Err() != nil {
			return time.Time{}
		}
		failures[ev.Seq]++
		backoff := min(time.Duration(1<<min(failures[ev.Seq], 12))*time.Second, hookMaxBackoff)
		retryAt[ev.Seq] = time.Now().Add(backoff)
		h.log.Warn("hook failed; will retry", keyEvent, ev.Type, keyBuild, ev.BuildID, "attempt", failures[ev.Seq], "retry_in", backoff, keyErr, err)
		if next.IsZero() || retryAt[ev.Seq].Before(next) {
			next = retryAt[ev.Seq]
		}
	}
	return next
}

// ack acknowledges the events whose hook ran and returns acks emptied.
// Acknowledging is idempotent: it retries, through the next leader if
// this node lost leadership meanwhile, for up to the handover.
func (h *hookRunner) ack(ctx context.Context, acks []uint64) []uint64 {
	if len(acks) == 0 {
		return acks
	}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), h.handover())
	defer cancel()
	for {
		_, err := h.apply.ApplyAndCatchUp(actx, &consensus.AckEvents{Seqs: acks})
		if err == nil {
			for _, seq := range acks {
				delete(h.ran, seq)
			}
			break
		}
		if actx.Err() != nil {
			h.log.Warn("acknowledge hook events", keyErr, err)
			break
		}
		select {
		case <-actx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
	return acks[:0]
}

// runHook runs DIR/<event> for one event, if it exists.
func (h *hookRunner) runHook(ctx context.Context, ev consensus.Event) error {
	if h.cfg.HooksDir == "" {
		return nil
	}
	path := filepath.Join(h.cfg.HooksDir, ev.Type)
	fi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.IsDir() || fi.Mode()&0o111 == 0 {
		return fmt.Errorf("hook %s is not an executable file", path)
	}
	b, err := h.raft.State().GetBuild(ev.BuildID)
	if err != nil {
		return fmt.Errorf("build %s of event %d: %w", ev.BuildID, ev.Seq, err)
	}
	stdin, err := h.cfg.BuildJSON(b)
	if err != nil {
		return fmt.Errorf("encode build %s: %w", ev.BuildID, err)
	}
	// A hook that has started finishes even if this node stops leading
	// meanwhile (within a grace period): the next leader would run it again.
	hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), hookTimeout)
	defer cancel()
	defer context.AfterFunc(ctx, func() { time.AfterFunc(hookStopGrace, cancel) })()
	cmd := exec.CommandContext(hctx, path)
	cmd.Stdin = bytes.NewReader(stdin)
	cmd.Env = append(os.Environ(),
		"DRVMESH_EVENT="+ev.Type,
		"DRVMESH_BUILD_ID="+ev.BuildID,
		"DRVMESH_DERIVATION="+b.Derivation,
		"DRVMESH_NODE="+h.cfg.Name,
		"DRVMESH_SERVER="+h.cfg.URL(),
	)
	out, err := cmd.CombinedOutput()
	result := "ok"
	if err != nil {
		result = "failed"
		err = fmt.Errorf("%w: %s", err, lastLine(out))
	}
	h.cfg.HookRuns.WithLabelValues(ev.Type, result).Inc()
	return err
}

func lastLine(b []byte) string {
	b = bytes.TrimSpace(b)
	if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
		b = b[i+1:]
	}
	if len(b) > 200 {
		b = b[:200]
	}
	return string(b)
}
