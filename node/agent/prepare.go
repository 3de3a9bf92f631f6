package agent

import (
	"slices"

	"github.com/drvmesh/drvmesh/consensus"
	"github.com/drvmesh/drvmesh/gossip"
)

// buildInputs is what the replicated state says about a build's inputs
// before it runs.
type buildInputs struct {
	// known: the state has the .drv and every input .drv, so missing is
	// exact and the daemon may substitute everything while it realises.
	known bool
	// missing lists the needed paths (the .drv, input sources, outputs of
	// input derivations) no live node holds.
	missing []string
	// needed are all those paths.
	needed []string
	// candidates are the store paths the outputs may refer to, as the
	// daemon decides it: the closure of the inputs and the outputs
	// themselves. Nil when some narinfo in the closure is unknown.
	candidates []string
}

// inputsOf reads a build's inputs from the state: one local read per
// record, no daemon call.
func (a *Agent) inputsOf(st *consensus.FSM, drvPath string) buildInputs {
	d, err := st.Drv(drvPath)
	if err != nil || d == nil {
		return buildInputs{}
	}
	needed := []string{drvPath}
	roots := append([]string(nil), d.InputSrcs...)
	for in, names := range d.InputDrvs {
		id, err := st.Drv(in)
		if err != nil || id == nil {
			return buildInputs{}
		}
		needed = append(needed, in)
		for _, name := range names {
			if p := id.Outputs[name]; p != "" {
				roots = append(roots, p)
			}
		}
	}
	needed = append(needed, roots...)
	missing, err := st.MissingPaths(needed)
	if err != nil {
		return buildInputs{}
	}
	for _, p := range a.unreachable(st, needed) {
		if !slices.Contains(missing, p) {
			missing = append(missing, p)
		}
	}
	in := buildInputs{known: true, missing: missing, needed: needed}
	if len(missing) == 0 {
		in.candidates = a.closure(st, roots)
		if in.candidates != nil {
			for _, p := range d.Outputs {
				in.candidates = append(in.candidates, p)
			}
		}
	}
	return in
}

// closure returns roots and everything they refer to, transitively, from
// the narinfo records; nil if one is missing.
func (a *Agent) closure(st *consensus.FSM, roots []string) []string {
	seen := make(map[string]bool, len(roots))
	out := make([]string, 0, len(roots))
	queue := append([]string(nil), roots...)
	for len(queue) > 0 {
		p := queue[len(queue)-1]
		queue = queue[:len(queue)-1]
		if seen[p] {
			continue
		}
		seen[p] = true
		out = append(out, p)
		hp, err := consensus.HashPart(p)
		if err != nil {
			return nil
		}
		ni, err := st.NarInfoByHash(hp)
		if err != nil || ni == nil {
			return nil
		}
		for _, r := range ni.References {
			if rp := a.cfg.StoreDir + "/" + r; !seen[rp] {
				queue = append(queue, rp)
			}
		}
	}
	return out
}

// unreachable returns the paths that are held, but only by nodes gossip
// says are gone: no holder could send them, so a build would fail for
// want of an input, not for itself. A holder gossip does not know yet
// counts as reachable.
func (a *Agent) unreachable(st *consensus.FSM, paths []string) []string {
	var out []string
	for _, p := range paths {
		hp, err := consensus.HashPart(p)
		if err != nil {
			continue
		}
		ni, err := st.NarInfoByHash(hp)
		if err != nil || len(ni.Holders) == 0 {
			continue // missing, not unreachable
		}
		if !slices.ContainsFunc(ni.Holders, a.reachable) {
			out = append(out, p)
		}
	}
	return out
}

// reachable reports whether a holder may send a nar: it is this node, or
// gossip does not say it is dead or gone.
func (a *Agent) reachable(holder string) bool {
	if holder == a.cfg.Name {
		return true
	}
	m, ok := a.members.Member(holder)
	return !ok || m.Status == gossip.StatusAlive || m.Status == gossip.StatusSuspect
}
