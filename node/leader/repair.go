package leader

import (
	"context"
	"time"
)

// repairBatch bounds the nars one repair pass copies again.
const repairBatch = 512

// repairCopies looks for nars short of copies every interval while this
// node leads and has them copied again (Copies.RepairCopies). A copy a
// node asked for can be lost with it: the node was killed before its
// retries ran, or the node asked was paused past them. The leader does
// this rather than every holder, so that one decider asks once per nar
// instead of every holder asking at the same time (a nar short of two
// copies would get one from each), and it already copies again what a
// lost node held. One pass runs at a time.
func (l *Leader) repairCopies(ctx context.Context) {
	interval := 5 * time.Second
	if l.cfg.Fast {
		interval = time.Second
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		n, err := l.copies.RepairCopies(ctx, repairBatch)
		switch {
		case err != nil && ctx.Err() == nil:
			l.log.Warn("copy nars short of copies", keyCount, n, keyErr, err)
		case n > 0:
			l.log.Info("copied nars short of copies", keyCount, n)
		}
	}
}
