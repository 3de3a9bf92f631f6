package leader

import (
	"context"
	"fmt"
	"slices"

	"github.com/drvmesh/drvmesh/consensus"
)

// producesPath reports whether p is an output of the derivation d.
func producesPath(d *consensus.Drv, p string) bool {
	for _, o := range d.Outputs {
		if o == p {
			return true
		}
	}
	return false
}

// submitMissing is the leader's answer to builds waiting for inputs the
// mesh lacks: it submits a build for each missing input's derivation
// that has none yet, as the Guix Build Coordinator does. A build whose
// missing input's newest build failed for good (or was canceled) fails
// too, naming that input: it would otherwise wait forever. Submitting
// the input again, then the build, starts over.
func (l *Leader) submitMissing(ctx context.Context) {
	st := l.raft.State()
	var waiting []*consensus.Build
	_ = st.QueuedBuilds(func(b *consensus.Build) bool {
		if len(b.WaitingFor) > 0 {
			waiting = append(waiting, b)
		}
		return true
	})
	if len(waiting) == 0 {
		return
	}
	drvRecord := l.cfg.Submit.DrvReader(ctx)
	var want []string
	failing := map[string][]string{} // error → waiting build ids
	for _, b := range waiting {
		d, err := st.Drv(b.Derivation)
		if err != nil || d == nil {
			continue
		}
	inputs:
		for _, missing := range b.WaitingFor {
			for in := range d.InputDrvs {
				rec, err := drvRecord(in)
				if err != nil {
					continue
				}
				if !producesPath(rec, missing) {
					continue
				}
				switch last := st.LatestBuild(in, ""); {
				case last == nil:
					if !slices.Contains(want, in) {
						want = append(want, in)
					}
				case last.State == consensus.StateFailed || last.State == consensus.StateCanceled:
					msg := fmt.Sprintf("input %s %s (build %s)", in, last.State, last.ID)
					failing[msg] = append(failing[msg], b.ID)
					break inputs
				}
			}
		}
	}
	for msg, ids := range failing {
		failed, err := l.apply.ApplyAndCatchUp(ctx, &consensus.FailQueued{IDs: ids, Error: msg})
		if err != nil {
			l.log.Warn("fail builds whose input failed", keyErr, err)
			continue
		}
		l.log.Info("failed builds whose input failed", keyCount, len(failed), "reason", msg)
	}
	if len(want) == 0 {
		return
	}
	made, err := l.cfg.Submit.Submit(ctx, want)
	if err != nil {
		l.log.Warn("submit builds for missing inputs", keyErr, err)
		return
	}
	l.log.Info("submitted builds for missing inputs", keyCount, made)
}
