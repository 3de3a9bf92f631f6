package gossip

import (
	"fmt"
	"time"

	"github.com/hashicorp/memberlist"
)

// The handlers below run inside memberlist's delegates, with memberlist's
// node lock held: they copy what they need from the node, update the member
// table and queue an event, and never block or call back into memberlist.

// handleJoin records n as alive.
func (g *Gossip) handleJoin(n *memberlist.Node) {
	m := g.memberFrom(n, StatusAlive)
	g.logger.Info("member joined", logKeyNode, m.Name, logKeyAddr, m.Addr)
	g.record(EventJoin, m)
}

// handleLeave records n as dead or left, as memberlist's state says.
func (g *Gossip) handleLeave(n *memberlist.Node) {
	status := StatusDead
	if n.State == memberlist.StateLeft {
		status = StatusLeft
	}
	m := g.memberFrom(n, status)
	g.logger.Info("member gone", logKeyNode, m.Name, logKeyStatus, status.String())
	g.record(EventLeave, m)
}

// handleUpdate records n's new meta.
func (g *Gossip) handleUpdate(n *memberlist.Node) {
	m := g.memberFrom(n, StatusAlive)
	g.logger.Debug("member updated", logKeyNode, m.Name)
	g.record(EventUpdate, m)
}

// memberFrom copies n into a Member. Meta that does not decode (which the
// alive delegate normally refuses earlier) is logged and left zero.
func (g *Gossip) memberFrom(n *memberlist.Node, status Status) Member {
	m := Member{
		Name:    n.Name,
		Addr:    n.Address(),
		Status:  status,
		Changed: time.Now(),
	}
	if len(n.Meta) > 0 {
		meta, err := DecodeMeta(n.Meta)
		if err != nil {
			g.logger.Warn("undecodable member meta", logKeyNode, n.Name, logKeyErr, err)
		} else {
			m.Meta = meta
		}
	}
	return m
}

// record stores m in the member table and queues its event.
func (g *Gossip) record(t EventType, m Member) {
	g.mu.Lock()
	defer g.mu.Unlock()
	stored := m
	stored.Meta = cloneMeta(m.Meta)
	g.members[m.Name] = &stored
	g.emitLocked(Event{Type: t, Member: m})
}

// emitLocked queues ev without blocking, dropping the oldest queued event
// when the channel is full. The caller holds g.mu.
func (g *Gossip) emitLocked(ev Event) {
	if g.evDone {
		return
	}
	for {
		select {
		case g.events <- ev:
			return
		default:
		}
		select {
		case <-g.events:
			g.dropped.Add(1)
		default:
		}
	}
}

// checkPeer refuses a node whose meta this version cannot decode.
func (g *Gossip) checkPeer(n *memberlist.Node) error {
	if _, err := DecodeMeta(n.Meta); err != nil {
		return fmt.Errorf("node %s: %w", n.Name, err)
	}
	return nil
}
