package agent

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/drvmesh/drvmesh/consensus"
	"github.com/drvmesh/drvmesh/gossip"
)

// RepairCopies asks for copies of the nars with fewer alive holders than
// MinCopies (or than there are alive nodes), at most max of them, and
// returns how many it asked for. A nar no alive node holds is left
// alone: nobody could send it. A nar is copied only when the call
// before found it short too, so that the copies its maker is still
// asking for (a build's outputs, an upload) are not asked for twice.
// It is the safety net under ReplicateAsync, whose retries end with the
// node that made them (a crash, a stop) or after a few tries (a paused
// node). Calls must not overlap.
func (k *Keeper) RepairCopies(ctx context.Context, max int) (int, error) {
	alive := map[string]bool{}
	for _, m := range k.members.Members() {
		if m.Status == gossip.StatusAlive {
			alive[m.Name] = true
		}
	}
	want := min(k.minCopies(), len(alive))
	var short []string
	err := k.raft.State().EachNar(func(hash string, ni *consensus.NarInfo) bool {
		have := 0
		for _, h := range ni.Holders {
			if alive[h] {
				have++
			}
		}
		if have > 0 && have < want {
			short = append(short, hash)
		}
		return len(short) < max
	})
	if err != nil {
		return 0, fmt.Errorf("find nars short of copies: %w", err)
	}
	seen := make(map[string]bool, len(short))
	var again []string
	for _, hp := range short {
		seen[hp] = true
		if k.short[hp] {
			again = append(again, hp)
		}
	}
	k.short = seen
	var errs []error
	for _, hp := range again {
		if err := k.ensureCopies(ctx, hp); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", hp, err))
		}
		if ctx.Err() != nil {
			break
		}
	}
	return len(again), errors.Join(errs...)
}

// EnsureCopies asks alive nodes to copy each nar until it has MinCopies
// alive holders (or every alive node holds it), and returns once they
// have: what a client was told is stored then survives one node. Up to
// ensureWorkers nars are copied at once. It gives up at ctx's end.
func (k *Keeper) EnsureCopies(ctx context.Context, hashParts ...string) error {
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	work := make(chan string)
	for range min(ensureWorkers, len(hashParts)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for hp := range work {
				if err := k.ensureCopies(ctx, hp); err != nil {
					mu.Lock()
					errs = append(errs, fmt.Errorf("copy %s: %w", hp, err))
					mu.Unlock()
				}
			}
		}()
	}
	for _, hp := range hashParts {
		work <- hp
	}
	close(work)
	wg.Wait()
	return errors.Join(errs...)
}

// ensureWorkers bounds the nars EnsureCopies copies at once.
const ensureWorkers = 16
