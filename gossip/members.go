package gossip

import (
	"fmt"
	"reflect"
	"time"

	"github.com/hashicorp/memberlist"
)

// The handlers below run inside memberlist's delegates, with memberlist's
// node lock held: they copy what they need from the node, update the member
// table and queue an event, and never block or call back into memberlist.

// handleJoin records n as alive.
func (g *Gossip) handleJoin(n *memberlist.Node) {
	m, _ := g.memberFrom(n, StatusAlive)
	g.logger.Info("member joined", logKeyNode, m.Name, logKeyAddr, m.Addr)
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.leftHint, m.Name)
	g.recordLocked(EventJoin, m)
}

// handleLeave records n as dead or left. memberlist's Node.State does not
// tell them apart in this notification, so a member counts as left when
// its last meta carries the leave mark, a push/pull reported it left, or it
// is this node leaving.
func (g *Gossip) handleLeave(n *memberlist.Node) {
	m, marked := g.memberFrom(n, StatusDead)
	g.mu.Lock()
	defer g.mu.Unlock()
	if marked || g.leftHint[m.Name] || (m.Name == g.cfg.Name && g.leaving) {
		m.Status = StatusLeft
	}
	delete(g.leftHint, m.Name)
	g.logger.Info("member gone", logKeyNode, m.Name, logKeyStatus, m.Status.String())
	g.recordLocked(EventLeave, m)
}

// handleUpdate records n's new meta; an update that changes only the
// leave mark is recorded without an event.
func (g *Gossip) handleUpdate(n *memberlist.Node) {
	m, _ := g.memberFrom(n, StatusAlive)
	g.logger.Debug("member updated", logKeyNode, m.Name)
	g.mu.Lock()
	defer g.mu.Unlock()
	if old, ok := g.members[m.Name]; ok && old.Status == StatusAlive && reflect.DeepEqual(old.Meta, m.Meta) {
		return
	}
	g.recordLocked(EventUpdate, m)
}

// noteMerge takes which members a push/pull reported as left: a member
// still alive here gets the hint, one declared dead a moment ago becomes
// left.
func (g *Gossip) noteMerge(peers []*memberlist.Node) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, n := range peers {
		if n.State != memberlist.StateLeft || n.Name == g.cfg.Name {
			continue
		}
		old, ok := g.members[n.Name]
		switch {
		case !ok:
			g.leftHint[n.Name] = true
		case old.Status == StatusDead && time.Since(old.Changed) > g.cfg.Timings.GossipToTheDeadTime:
			// Declared dead here long ago: the remote's report could be of
			// an earlier leave, which memberlist forgets after this time.
		default:
			// Alive here (the hint waits for NotifyLeave), or declared dead
			// a moment ago while the remote side heard the node's own leave.
			g.markLeftLocked(n.Name)
		}
	}
}

// memberFrom copies n into a Member and reports its leave mark. Meta that
// does not decode (which the alive delegate normally refuses earlier) is
// logged and left zero.
func (g *Gossip) memberFrom(n *memberlist.Node, status Status) (Member, bool) {
	m := Member{
		Name:    n.Name,
		Addr:    n.Address(),
		Status:  status,
		Changed: time.Now(),
	}
	meta, leaving, err := decodeMeta(n.Meta)
	if err != nil {
		g.logger.Warn("undecodable member meta", logKeyNode, n.Name, logKeyErr, err)
		return m, false
	}
	m.Meta = meta
	return m, leaving
}

// record stores m in the member table and queues its event.
func (g *Gossip) record(t EventType, m Member) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.recordLocked(t, m)
}

// recordLocked is record for a caller holding g.mu.
func (g *Gossip) recordLocked(t EventType, m Member) {
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
