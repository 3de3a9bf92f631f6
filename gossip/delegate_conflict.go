package gossip

import "github.com/hashicorp/memberlist"

// conflictDelegate reports two nodes claiming one name; memberlist keeps
// the one it knew first.
type conflictDelegate struct{ g *Gossip }

var _ memberlist.ConflictDelegate = (*conflictDelegate)(nil)

func (d *conflictDelegate) NotifyConflict(existing, other *memberlist.Node) {
	d.g.logger.Error("node name conflict", logKeyNode, existing.Name,
		"existing", existing.Address(), "other", other.Address())
}
