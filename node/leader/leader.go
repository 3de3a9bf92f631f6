package leader

import (
	"context"
	"time"

	"github.com/drvmesh/drvmesh/consensus"
	"github.com/drvmesh/drvmesh/gossip"
)

// Run runs the leader-only duties while this node leads: raft
// membership from gossip, requeueing the builds of dead nodes, scheduling,
// builds for missing inputs, and hooks. Each reacts to the change that
// concerns it (an applied command, a gossip event); a slow tick catches
// deferred builds and timeouts.
func (l *Leader) Run(ctx context.Context) {
	lead, unsub := l.raft.WatchLeadership()
	defer unsub()
	var stop context.CancelFunc
	done := make(chan struct{})
	close(done)
	for {
		if l.raft.IsLeader() && stop == nil {
			var lctx context.Context
			lctx, stop = context.WithCancel(ctx)
			done = make(chan struct{})
			go func() {
				defer close(done)
				l.lead(lctx)
			}()
		} else if !l.raft.IsLeader() && stop != nil {
			stop()
			<-done
			stop = nil
		}
		select {
		case <-ctx.Done():
			if stop != nil {
				stop()
			}
			<-done
			return
		case <-lead:
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// lead is one term of leadership.
func (l *Leader) lead(ctx context.Context) {
	l.log.Info("leading the mesh")
	sp := l.newLeaderPlanner()
	defer sp.close()
	hooksDone := make(chan struct{})
	go func() {
		defer close(hooksDone)
		l.hooks.run(ctx)
	}()
	defer func() { <-hooksDone }()
	repairDone := make(chan struct{})
	go func() {
		defer close(repairDone)
		l.repairCopies(ctx)
	}()
	defer func() { <-repairDone }()
	events := l.members.Events()
	// The tick only drives membership (dead-voter timeouts, catch-up
	// checks); scheduling reacts to changes and to deferred builds.
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	gone := &lost{deadSince: map[string]time.Time{}, requeued: map[string]bool{}}
	var deferred <-chan time.Time
	sched, member := true, true
	for {
		if sched {
			deferred = nil
			if wake := sp.round(ctx); !wake.IsZero() {
				deferred = time.After(time.Until(wake) + time.Millisecond)
			}
			if sp.takeWaiting() {
				l.submitMissing(ctx)
			}
		}
		if member {
			l.reconcile(ctx, gone)
		}
		sched, member = false, false
		select {
		case <-ctx.Done():
			return
		case <-sp.changed():
			sched = true
		case _, ok := <-events:
			if !ok {
				events = nil
			}
			sched, member = true, true
		case <-deferred:
			sched = true
		case <-tick.C:
			member = true
		}
	}
}

// lost is what the leader remembers about lost members across the
// reconcile passes of one term.
type lost struct {
	deadSince map[string]time.Time // when gossip first said dead or left
	requeued  map[string]bool      // whose builds were handed back
}

// reconcile makes raft membership follow gossip: admitted, alive nodes
// join as nonvoters and are promoted once caught up, up to MaxVoters;
// dead nodes lose their builds at once and their vote after DeadAfter.
func (l *Leader) reconcile(ctx context.Context, gone *lost) {
	recs, err := l.raft.State().Nodes()
	if err != nil {
		l.log.Warn("reconcile: read admission records", keyErr, err)
		return
	}
	servers, err := l.raft.Servers()
	if err != nil {
		l.log.Warn("reconcile: read raft configuration", keyErr, err)
		return
	}
	inRaft := map[string]consensus.Server{}
	voters := 0
	for _, s := range servers {
		inRaft[s.ID] = s
		if s.Voter {
			voters++
		}
	}
	for _, rec := range recs {
		if rec.Name == l.cfg.Name {
			continue
		}
		m, known := l.members.Member(rec.Name)
		srv, member := inRaft[rec.Name]
		switch {
		case known && m.Status == gossip.StatusAlive:
			delete(gone.deadSince, rec.Name)
			delete(gone.requeued, rec.Name)
			if l.keepAlive(ctx, rec, m, srv, member, voters < l.cfg.MaxVoters) {
				voters++
			}
		case known && (m.Status == gossip.StatusDead || m.Status == gossip.StatusLeft):
			l.letGo(ctx, gone, rec, m, member)
		}
	}
}

// keepAlive keeps an alive member in raft at its current address: added
// as a nonvoter, then promoted once caught up while there is room for a
// voter. It reports whether it promoted the member.
func (l *Leader) keepAlive(ctx context.Context, rec consensus.Node, m gossip.Member, srv consensus.Server, member, room bool) bool {
	if m.Meta.Raft != "" && m.Meta.Raft != rec.Raft {
		// The node came back on another address: gossip knows it
		// first; record it, then point raft at it.
		rec.Raft, rec.HTTP, rec.P2P = m.Meta.Raft, m.Meta.HTTP, m.Meta.P2P
		if _, err := l.apply.ApplyAndCatchUp(ctx, &consensus.PutNode{Node: rec}); err != nil {
			l.log.Warn("record new address", keyMember, rec.Name, keyErr, err)
			return false
		}
	}
	switch {
	case member && srv.Addr != rec.Raft:
		var err error
		if srv.Voter {
			err = l.raft.AddVoter(rec.Name, rec.Raft)
		} else {
			err = l.raft.AddNonvoter(rec.Name, rec.Raft)
		}
		if err != nil {
			l.log.Warn("point raft at new address", keyMember, rec.Name, keyAddr, rec.Raft, keyErr, err)
		} else {
			l.log.Info("raft address changed", keyMember, rec.Name, keyAddr, rec.Raft)
		}
	case !member:
		if err := l.raft.AddNonvoter(rec.Name, rec.Raft); err != nil {
			l.log.Warn("add nonvoter", keyMember, rec.Name, keyErr, err)
		} else {
			l.log.Info("added nonvoter", keyMember, rec.Name)
		}
	case !srv.Voter && room && l.caughtUp(ctx, rec):
		if err := l.raft.AddVoter(rec.Name, rec.Raft); err != nil {
			l.log.Warn("promote to voter", keyMember, rec.Name, keyErr, err)
			return false
		}
		l.log.Info("promoted to voter", keyMember, rec.Name)
		return true
	}
	return false
}

// letGo handles a member gossip says is dead or left: its builds go back
// to the queue and its nars are copied again at once; its raft vote goes
// when it left, or after DeadAfter.
func (l *Leader) letGo(ctx context.Context, gone *lost, rec consensus.Node, m gossip.Member, member bool) {
	if _, ok := gone.deadSince[rec.Name]; !ok {
		gone.deadSince[rec.Name] = time.Now()
	}
	if !gone.requeued[rec.Name] {
		if ids, err := l.apply.ApplyAndCatchUp(ctx, &consensus.RequeueNode{Node: rec.Name}); err != nil {
			l.log.Warn("requeue the builds of a lost node", keyMember, rec.Name, keyErr, err)
		} else {
			gone.requeued[rec.Name] = true
			if len(ids) > 0 {
				l.log.Info("requeued the builds of a lost node", keyMember, rec.Name, keyCount, len(ids))
			}
			l.rereplicate(rec.Name)
		}
	}
	if member && (m.Status == gossip.StatusLeft || time.Since(gone.deadSince[rec.Name]) > l.cfg.DeadAfter) {
		if err := l.raft.RemoveServer(rec.Name); err != nil {
			l.log.Warn("remove from raft", keyMember, rec.Name, keyErr, err)
		} else {
			l.log.Info("removed from raft", keyMember, rec.Name, keyState, m.Status.String())
		}
	}
}

// caughtUp asks a nonvoter how far it has applied the log.
func (l *Leader) caughtUp(ctx context.Context, rec consensus.Node) bool {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	applied, err := l.index.RemoteApplied(ctx, rec.Raft)
	if err != nil {
		return false
	}
	_, commit, _ := l.raft.Stats()
	return applied+64 >= commit
}

// rereplicate restores the copy count of every nar a lost node held.
func (l *Leader) rereplicate(name string) {
	paths, err := l.raft.State().NarsHeldBy(name)
	if err != nil || len(paths) == 0 {
		return
	}
	var hps []string
	for _, p := range paths {
		if hp, err := consensus.HashPart(p); err == nil {
			hps = append(hps, hp)
		} else {
			hps = append(hps, p)
		}
	}
	l.copies.ReplicateAsync(hps...)
}
