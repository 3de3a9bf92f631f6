package gossip

import "github.com/hashicorp/memberlist"

// eventDelegate forwards memberlist's membership notifications to the
// Gossip's member table.
type eventDelegate struct{ g *Gossip }

var _ memberlist.EventDelegate = (*eventDelegate)(nil)

func (d *eventDelegate) NotifyJoin(n *memberlist.Node)   { d.g.handleJoin(n) }
func (d *eventDelegate) NotifyLeave(n *memberlist.Node)  { d.g.handleLeave(n) }
func (d *eventDelegate) NotifyUpdate(n *memberlist.Node) { d.g.handleUpdate(n) }
