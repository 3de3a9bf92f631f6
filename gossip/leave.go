package gossip

import (
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// A leaving node tells every member directly, over memberlist's encrypted
// TCP stream, before it broadcasts its leave. memberlist's NotifyLeave does
// not say whether a node left or died, and the leave mark in the meta
// travels by UDP gossip to a few random members at a time: a member can
// hear the leave (or detect the silence) before the mark and would list
// the node as dead for good. The direct notice arrives first, so a member
// that could be reached always lists a node that left as left.

// msgLeaving is the one user message the mesh sends over gossip: the
// sender's name follows the type byte.
const msgLeaving byte = 1

// maxUserMsg bounds an incoming user message: a type byte and a name.
const maxUserMsg = 1 + 256

// tellLeaving sends the leave notice to every live member in parallel and
// waits up to timeout for the sends.
func (g *Gossip) tellLeaving(ml *memberlist.Memberlist, timeout time.Duration) {
	msg := append([]byte{msgLeaving}, g.cfg.Name...)
	var wg sync.WaitGroup
	for _, n := range ml.Members() {
		if n.Name == g.cfg.Name {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := ml.SendReliable(n, msg); err != nil {
				g.logger.Debug("leave notice not delivered", logKeyNode, n.Name, logKeyErr, err)
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(timeout):
		g.logger.Warn("leave notice: some members did not answer in time")
	}
}

// handleMsg takes a user message. A leave notice marks its sender as left:
// at once if memberlist already reported it gone, else when it does.
func (g *Gossip) handleMsg(buf []byte) {
	if len(buf) < 2 || len(buf) > maxUserMsg || buf[0] != msgLeaving {
		g.logger.Debug("ignored a gossip user message", "bytes", len(buf))
		return
	}
	name := string(buf[1:])
	if name == g.cfg.Name {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.markLeftLocked(name)
}

// markLeftLocked records that name left. A member already listed as dead
// becomes left, with a leave event; a member still alive gets the hint
// that its coming NotifyLeave is a leave. The caller holds g.mu.
func (g *Gossip) markLeftLocked(name string) {
	old, ok := g.members[name]
	if !ok {
		return
	}
	switch old.Status {
	case StatusDead:
		m := *old
		m.Status, m.Changed = StatusLeft, time.Now()
		g.logger.Info("member gone", logKeyNode, name, logKeyStatus, m.Status.String())
		g.recordLocked(EventLeave, m)
	case StatusAlive, StatusSuspect:
		g.leftHint[name] = true
	}
}
