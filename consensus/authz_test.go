package consensus

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// bogus is a command of a type no registry row knows.
type bogus struct{}

func (bogus) Type() CommandType { return 99 }

// authzState is a mesh of trusted n1 (voter) and n2, volunteer v1,
// revoked r1; build sched scheduled on n1, run building on n1, queued
// queued; a nar of path 5 held by n1.
type authzState struct {
	*testFSM
	sched, run, queued string
	nodes              map[string]Node
}

func newAuthzState(t *testing.T) *authzState {
	t.Helper()
	f := newTestFSM(t)
	f.mustApply(&SetSettings{Settings: Settings{AdminTokenHash: "admin-hash", JoinTokenHash: "join-hash"}}, t0)
	s := &authzState{testFSM: f, nodes: map[string]Node{
		"n1": {Name: "n1", HTTP: "h1", Raft: "r1", CertFingerprint: "fp1", PeerID: "p1", AdmittedAt: t0, Voter: true},
		"n2": {Name: "n2", HTTP: "h2", Raft: "r2", CertFingerprint: "fp2", PeerID: "p2", AdmittedAt: t0, Kind: KindTrusted, Owner: "n2"},
		"v1": {Name: "v1", HTTP: "hv", Raft: "rv", CertFingerprint: "fpv", AdmittedAt: t0, Kind: KindVolunteer, Owner: "alice", NixKey: "v1:k"},
		"r1": {Name: "r1", HTTP: "hr", Raft: "rr", CertFingerprint: "fpr", AdmittedAt: t0, Revoked: true, RevokedAt: t0},
	}}
	for _, n := range s.nodes {
		f.mustApply(&PutNode{Node: n}, t0)
	}
	s.sched = f.submit(1, nil)
	f.mustApply(&AssignBuilds{Assignments: []Assignment{{BuildID: s.sched, Node: "n1"}}}, t0)
	s.run = f.running(2, "n1")
	s.queued = f.submit(3, nil)
	f.putNar(5, "n1")
	return s
}

// node returns the principal of a recorded node speaking for itself.
func (s *authzState) node(name string) Principal {
	n, err := s.Node(name)
	if err != nil {
		s.t.Fatal(err)
	}
	return NodePrincipal(n)
}

// with returns node name's record changed by fn.
func (s *authzState) with(name string, fn func(*Node)) *PutNode {
	n := s.nodes[name]
	fn(&n)
	return &PutNode{Node: n}
}

// gate is the leader's path: apply cmd only when p may issue it.
func (s *authzState) gate(cmd Command, p Principal) error {
	s.t.Helper()
	if err := s.Authorize(cmd, p); err != nil {
		return err
	}
	if res, ok := s.apply(cmd, t0).(error); ok {
		return res
	}
	return nil
}

func manyBuilds(n, priority int) *SubmitBuilds {
	c := &SubmitBuilds{Builds: make([]Build, n)}
	for i := range c.Builds {
		c.Builds[i] = Build{Derivation: storePath(i, "x.drv"), System: "x86_64-linux", Priority: priority}
	}
	return c
}

func TestFSM_Authorize(t *testing.T) {
	s := newAuthzState(t)
	leader, admin, user := LeaderPrincipal("n1"), AdminPrincipal("n2"), UserPrincipal("n2")
	n1, n2, v1, r1 := s.node("n1"), s.node("n2"), s.node("v1"), s.node("r1")
	ghost := NodePrincipal(&Node{Name: "ghost"})
	submit := func(b Build) *SubmitBuilds {
		if b.Derivation == "" {
			b.Derivation, b.System = storePath(40, "x.drv"), "x86_64-linux"
		}
		return &SubmitBuilds{Builds: []Build{b}}
	}
	tags := func(n, size int) map[string]string {
		m := map[string]string{}
		for i := range n {
			m[fmt.Sprintf("%0*d", size, i)] = "v"
		}
		return m
	}
	nar := func(holders ...string) NarInfo {
		return NarInfo{StorePath: storePath(1002, "pkg"), NarHash: "sha256:" + hashOf(1002), NarSize: 9, Holders: holders}
	}
	outputs := func(holder string, nars ...NarInfo) *FinishOutputs {
		if nars == nil {
			nars = []NarInfo{nar()}
		}
		return &FinishOutputs{
			NarInfos: PutNarInfos{NarInfos: nars, Holder: holder},
			Finish: FinishBuild{ID: s.run, Node: holder, Success: true,
				Outputs: []Output{{Name: "out", Path: storePath(1002, "pkg"), NarHash: "sha256:" + hashOf(1002), NarSize: 9}}},
		}
	}
	otherSettings := Settings{AdminTokenHash: "mine", JoinTokenHash: "join-hash"}
	sameSettings := Settings{AdminTokenHash: "admin-hash", JoinTokenHash: "join-hash"}
	unknownBuild := NewBuildID(t0)

	for _, tc := range []struct {
		name string
		cmd  Command
		p    Principal
		want error // nil: allowed
		also error // a second sentinel the refusal wraps
	}{
		// Any command: membership, revocation, trusted roles.
		{"unknown command type", bogus{}, leader, ErrUnauthorized, nil},
		{"nil command", (*AssignBuilds)(nil), leader, ErrUnauthorized, nil},
		{"command by value", AssignBuilds{}, leader, ErrBadCommand, nil},
		{"no issuing node", &PutNarInfos{NarInfos: []NarInfo{nar()}, Holder: ""}, Principal{}, ErrUnauthorized, nil},
		{"ghost node", &SetNarHolder{Hash: hashOf(5), Node: "ghost", Present: true}, ghost, ErrUnauthorized, nil},
		{"revoked node about itself", &SetNarHolder{Hash: hashOf(5), Node: "r1", Present: true}, r1, ErrUnauthorized, nil},
		{"volunteer claims admin", &RemoveNode{Name: "n2"}, AdminPrincipal("v1"), ErrUnauthorized, nil},
		{"volunteer claims leader", &AssignBuilds{}, LeaderPrincipal("v1"), ErrUnauthorized, nil},
		{"volunteer relays a user token", &CancelBuilds{IDs: []string{s.queued}}, UserPrincipal("v1"), ErrUnauthorized, nil},
		{"volunteer claims to be trusted", &SetNarHolder{Hash: hashOf(5), Node: "v1", Present: true},
			Principal{Node: "v1", Trusted: true}, ErrUnauthorized, nil},
		{"leader without a record (bootstrap)", &AssignBuilds{}, LeaderPrincipal("n9"), nil, nil},
		{"untrusted leader without a record", &AssignBuilds{}, Principal{Node: "n9", Leader: true}, ErrUnauthorized, nil},

		// SubmitBuilds.
		{"submit by user", submit(Build{}), user, nil, nil},
		{"submit by admin", submit(Build{}), admin, nil, nil},
		{"submit by leader (missing inputs)", submit(Build{}), leader, nil, nil},
		{"submit by a member", submit(Build{}), n1, ErrUnauthorized, nil},
		{"submit at the priority bounds", submit(Build{Priority: -MaxPriority}), user, nil, nil},
		{"submit above the priority bound", submit(Build{Priority: MaxPriority + 1}), user, ErrBadCommand, nil},
		{"submit below the priority bound", submit(Build{Priority: -MaxPriority - 1}), user, ErrBadCommand, nil},
		{"submit of the most tags", submit(Build{Tags: tags(MaxTags, MaxTagLen)}), user, nil, nil},
		{"submit of too many tags", submit(Build{Tags: tags(MaxTags+1, 3)}), user, ErrBadCommand, nil},
		{"submit of a long tag key", submit(Build{Tags: tags(1, MaxTagLen+1)}), user, ErrBadCommand, nil},
		{"submit of a long tag value", submit(Build{Tags: map[string]string{"k": strings.Repeat("v", MaxTagLen+1)}}), user, ErrBadCommand, nil},
		{"submit of the most builds", manyBuilds(MaxSubmitBuilds, 1), user, nil, nil},
		{"submit of too many builds", manyBuilds(MaxSubmitBuilds+1, 1), user, ErrBadCommand, nil},
		{"attack: 100,000 builds at priority 2^30", manyBuilds(100_000, 1<<30), admin, ErrBadCommand, nil},
		{"submit of too many derivations", &SubmitBuilds{Drvs: make([]Drv, MaxSubmitDrvs+1)}, user, ErrBadCommand, nil},

		// CancelBuilds.
		{"cancel by user", &CancelBuilds{IDs: []string{s.queued}}, user, nil, nil},
		{"cancel by admin", &CancelBuilds{IDs: []string{s.queued}}, admin, nil, nil},
		{"cancel by a member", &CancelBuilds{IDs: []string{s.queued}}, n2, ErrUnauthorized, nil},
		{"cancel by the leader", &CancelBuilds{IDs: []string{s.queued}}, leader, ErrUnauthorized, nil},
		{"cancel of too many", &CancelBuilds{IDs: make([]string, MaxCommandItems+1)}, user, ErrBadCommand, nil},

		// Leader only.
		{"assign by leader", &AssignBuilds{Assignments: []Assignment{{BuildID: s.queued, Node: "n2"}}}, leader, nil, nil},
		{"assign by admin", &AssignBuilds{Assignments: []Assignment{{BuildID: s.queued, Node: "n2"}}}, admin, ErrUnauthorized, nil},
		{"assign by a member to itself", &AssignBuilds{Assignments: []Assignment{{BuildID: s.queued, Node: "n2"}}}, n2, ErrUnauthorized, nil},
		{"ack by leader", &AckEvents{Seqs: []uint64{1}}, leader, nil, nil},
		{"ack by a member", &AckEvents{Seqs: []uint64{1}}, n2, ErrUnauthorized, nil},
		{"fail queued by leader", &FailQueued{IDs: []string{s.queued}, Error: "x"}, leader, nil, nil},
		{"fail queued by admin", &FailQueued{IDs: []string{s.queued}, Error: "x"}, admin, ErrUnauthorized, nil},
		{"clear waiting by leader", &ClearWaiting{BuildID: s.queued}, leader, nil, nil},
		{"clear waiting by admin", &ClearWaiting{BuildID: s.queued}, admin, ErrUnauthorized, nil},

		// RequeueNode.
		{"requeue by leader", &RequeueNode{Node: "n1"}, LeaderPrincipal("n2"), nil, nil},
		{"requeue of itself (hand-back)", &RequeueNode{Node: "n1"}, n1, nil, nil},
		{"requeue of another node", &RequeueNode{Node: "n1"}, n2, ErrUnauthorized, nil},

		// StartBuild, FinishBuild, FinishOutputs.
		{"start by its node", &StartBuild{ID: s.sched, Node: "n1"}, n1, nil, nil},
		{"start by its node as leader", &StartBuild{ID: s.sched, Node: "n1"}, leader, nil, nil},
		{"attack: start another's build as itself", &StartBuild{ID: s.sched, Node: "n2"}, n2, ErrUnauthorized, ErrBadTransition},
		{"attack: start in another's name", &StartBuild{ID: s.sched, Node: "n1"}, n2, ErrUnauthorized, nil},
		{"leader starts for another node", &StartBuild{ID: s.sched, Node: "n1"}, LeaderPrincipal("n2"), ErrUnauthorized, nil},
		{"start of a queued build", &StartBuild{ID: s.queued, Node: "n1"}, n1, ErrUnauthorized, ErrBadTransition},
		{"start of an unknown build", &StartBuild{ID: unknownBuild, Node: "n1"}, n1, ErrNotFound, nil},
		{"finish by its node", &FinishBuild{ID: s.run, Node: "n1", Error: "x"}, n1, nil, nil},
		{"finish by another node", &FinishBuild{ID: s.run, Node: "n2", Error: "x"}, n2, ErrUnauthorized, ErrBadTransition},
		{"finish in another's name", &FinishBuild{ID: s.run, Node: "n1", Error: "x"}, n2, ErrUnauthorized, nil},
		{"finish outputs by its node", outputs("n1"), n1, nil, nil},
		{"finish outputs naming itself in the nar", outputs("n1", nar("n1")), n1, nil, nil},
		{"attack: finish outputs of another's build", outputs("n2"), n2, ErrUnauthorized, ErrBadTransition},
		{"finish outputs naming another holder", outputs("n1", nar("n2")), n1, ErrUnauthorized, nil},
		{"finish outputs with another holder", &FinishOutputs{NarInfos: PutNarInfos{NarInfos: []NarInfo{nar()}, Holder: "n2"},
			Finish: FinishBuild{ID: s.run, Node: "n1", Error: "x"}}, n1, ErrUnauthorized, nil},

		// PutNarInfos, SetNarHolder.
		{"nars held by itself", &PutNarInfos{NarInfos: []NarInfo{nar()}, Holder: "n2"}, n2, nil, nil},
		{"nars held by a volunteer itself", &PutNarInfos{NarInfos: []NarInfo{nar()}, Holder: "v1"}, v1, nil, nil},
		{"nars held by another", &PutNarInfos{NarInfos: []NarInfo{nar()}, Holder: "n1"}, n2, ErrUnauthorized, nil},
		{"nars naming another holder", &PutNarInfos{NarInfos: []NarInfo{nar("n1")}, Holder: "n2"}, n2, ErrUnauthorized, nil},
		{"nars held by another, from the leader", &PutNarInfos{NarInfos: []NarInfo{nar()}, Holder: "n2"}, leader, ErrUnauthorized, nil},
		{"nars without a holder", &PutNarInfos{NarInfos: []NarInfo{nar()}}, n2, ErrUnauthorized, nil},
		{"too many nars", &PutNarInfos{NarInfos: make([]NarInfo, MaxCommandItems+1), Holder: "n2"}, n2, ErrBadCommand, nil},
		{"holder: itself", &SetNarHolder{Hash: hashOf(5), Node: "n2", Present: true}, n2, nil, nil},
		{"holder: itself dropped", &SetNarHolder{Hash: hashOf(5), Node: "n1"}, n1, nil, nil},
		{"holder: another dropped", &SetNarHolder{Hash: hashOf(5), Node: "n1"}, n2, ErrUnauthorized, nil},

		// PutNode.
		{"join: admin records a new node", &PutNode{Node: Node{Name: "n3", CertFingerprint: "fp3"}}, admin, nil, nil},
		{"attack: a member records a ghost", &PutNode{Node: Node{Name: "ghost", Voter: true}}, n2, ErrUnauthorized, nil},
		{"a ghost records itself", &PutNode{Node: Node{Name: "ghost"}}, ghost, ErrUnauthorized, nil},
		{"a member rewrites another", s.with("n1", func(n *Node) { n.HTTP = "evil" }), n2, ErrUnauthorized, nil},
		{"own addresses", s.with("n2", func(n *Node) { n.HTTP, n.Raft, n.P2P = "h", "r", "p" }), n2, nil, nil},
		{"own addresses, kind and owner left out", s.with("n2", func(n *Node) { n.HTTP, n.Kind, n.Owner = "h", "", "" }), n2, nil, nil},
		{"old-shape record, defaults written out", s.with("n1", func(n *Node) { n.Kind, n.Owner = KindTrusted, "n1" }), n1, nil, nil},
		{"own voter flag", s.with("n2", func(n *Node) { n.Voter = true }), n2, ErrUnauthorized, nil},
		{"own kind", s.with("n2", func(n *Node) { n.Kind = KindVolunteer }), n2, ErrUnauthorized, nil},
		{"volunteer makes itself trusted", s.with("v1", func(n *Node) { n.Kind = KindTrusted }), v1, ErrUnauthorized, nil},
		{"own owner", s.with("v1", func(n *Node) { n.Owner = "bob" }), v1, ErrUnauthorized, nil},
		{"own fingerprint", s.with("n2", func(n *Node) { n.CertFingerprint = "" }), n2, ErrUnauthorized, nil},
		{"own key", s.with("v1", func(n *Node) { n.NixKey = "v1:other" }), v1, ErrUnauthorized, nil},
		{"own peer id", s.with("n2", func(n *Node) { n.PeerID = "p9" }), n2, ErrUnauthorized, nil},
		{"own revocation lifted", s.with("r1", func(n *Node) { n.Revoked = false }), r1, ErrUnauthorized, nil},
		{"own admission time", s.with("n2", func(n *Node) { n.AdmittedAt = t0.Add(1) }), n2, ErrUnauthorized, nil},
		{"leader records itself (bootstrap)", &PutNode{Node: Node{Name: "n9", Voter: true}}, LeaderPrincipal("n9"), nil, nil},
		{"leader reconciles addresses", s.with("n2", func(n *Node) { n.Raft = "r9" }), leader, nil, nil},
		{"leader changes a voter flag", s.with("n2", func(n *Node) { n.Voter = true }), leader, ErrUnauthorized, nil},
		{"leader records a new node", &PutNode{Node: Node{Name: "n7"}}, leader, ErrUnauthorized, nil},
		{"admin revokes", s.with("n2", func(n *Node) { n.Revoked, n.RevokedAt = true, t0 }), admin, nil, nil},
		{"volunteer voter", &PutNode{Node: Node{Name: "v2", Kind: KindVolunteer, Voter: true}}, admin, ErrBadCommand, nil},
		{"unknown kind", &PutNode{Node: Node{Name: "v2", Kind: "root"}}, admin, ErrBadCommand, nil},

		// RemoveNode, SetSettings.
		{"remove by admin", &RemoveNode{Name: "n1"}, admin, nil, nil},
		{"attack: a member removes a voter", &RemoveNode{Name: "n1"}, n2, ErrUnauthorized, nil},
		{"remove by the leader", &RemoveNode{Name: "n2"}, leader, ErrUnauthorized, nil},
		{"settings by admin", &SetSettings{Settings: otherSettings}, admin, nil, nil},
		{"attack: a member replaces the admin token", &SetSettings{Settings: otherSettings}, n2, ErrUnauthorized, nil},
		{"settings by a user", &SetSettings{Settings: otherSettings}, user, ErrUnauthorized, nil},
		{"leader changes settings", &SetSettings{Settings: otherSettings}, leader, ErrUnauthorized, nil},
		{"leader writes the same settings again", &SetSettings{Settings: sameSettings}, leader, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := digestOf(t, s.FSM)
			err := s.Authorize(tc.cmd, tc.p)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if !errors.Is(err, tc.want) || tc.also != nil && !errors.Is(err, tc.also) {
				t.Fatalf("err = %v, want %v (%v)", err, tc.want, tc.also)
			}
			t.Log(err)
			if err := s.gate(tc.cmd, tc.p); err == nil {
				t.Fatal("gate applied a refused command")
			}
			if after := digestOf(t, s.FSM); after != before {
				t.Fatal("a refused command changed the state")
			}
		})
	}
}

func TestFSM_Authorize_Bootstrap(t *testing.T) {
	// A new mesh: no settings and no node records yet. The bootstrap
	// node, leading, records the settings and itself; nobody else may.
	f := newTestFSM(t)
	s := &authzState{testFSM: f}
	settings := &SetSettings{Settings: Settings{AdminTokenHash: "a"}}
	self := &PutNode{Node: Node{Name: "n1", HTTP: "h", Raft: "r", Voter: true}}
	for _, cmd := range []Command{settings, self} {
		if err := s.gate(cmd, NodePrincipal(&Node{Name: "n1"})); !errors.Is(err, ErrUnauthorized) {
			t.Fatalf("%T by a node without a record: %v", cmd, err)
		}
		if err := s.gate(cmd, LeaderPrincipal("n1")); err != nil {
			t.Fatalf("%T by the bootstrap leader: %v", cmd, err)
		}
	}
	if err := s.Authorize(self, LeaderPrincipal("n1")); err != nil {
		t.Fatalf("the leader's record again: %v", err)
	}
	if err := s.Authorize(&SetSettings{Settings: Settings{AdminTokenHash: "b"}}, LeaderPrincipal("n1")); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("the leader changes settings after bootstrap: %v", err)
	}
}

// BenchmarkAuthorize_StartBuild is the leader's check of a worker's
// start report: a node record and a build read.
func BenchmarkAuthorize_StartBuild(b *testing.B) {
	f := newTestFSM(b)
	f.mustApply(&PutNode{Node: Node{Name: "n1"}}, t0)
	id := f.submit(1, nil)
	f.mustApply(&AssignBuilds{Assignments: []Assignment{{BuildID: id, Node: "n1"}}}, t0)
	p, cmd := NodePrincipal(&Node{Name: "n1"}), &StartBuild{ID: id, Node: "n1"}
	b.ReportAllocs()
	for b.Loop() {
		if err := f.Authorize(cmd, p); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAuthorize_Submit1000 is the check of a 1,000-build
// SubmitBuilds (the node's entry size) with two tags a build.
func BenchmarkAuthorize_Submit1000(b *testing.B) {
	f := newTestFSM(b)
	f.mustApply(&PutNode{Node: Node{Name: "n1"}}, t0)
	cmd := manyBuilds(1000, 5)
	for i := range cmd.Builds {
		cmd.Builds[i].Tags = map[string]string{"job": "bench", "attr": fmt.Sprint(i)}
	}
	p := UserPrincipal("n1")
	b.ReportAllocs()
	for b.Loop() {
		if err := f.Authorize(cmd, p); err != nil {
			b.Fatal(err)
		}
	}
}
