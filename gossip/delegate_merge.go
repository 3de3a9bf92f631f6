package gossip

import "github.com/hashicorp/memberlist"

// mergeDelegate refuses peers this node cannot understand: a single alive
// message, or a whole cluster on join, whose meta does not decode.
type mergeDelegate struct{ g *Gossip }

var (
	_ memberlist.MergeDelegate = (*mergeDelegate)(nil)
	_ memberlist.AliveDelegate = (*mergeDelegate)(nil)
)

// NotifyAlive refuses one node with undecodable meta.
func (d *mergeDelegate) NotifyAlive(n *memberlist.Node) error { return d.g.checkPeer(n) }

// NotifyMerge refuses a push/pull with any node whose meta is undecodable,
// so a join into such a cluster fails; otherwise it notes which peers the
// remote side saw leave.
func (d *mergeDelegate) NotifyMerge(peers []*memberlist.Node) error {
	for _, n := range peers {
		if err := d.g.checkPeer(n); err != nil {
			return err
		}
	}
	d.g.noteMerge(peers)
	return nil
}
