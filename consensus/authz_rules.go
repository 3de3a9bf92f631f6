package consensus

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// The rule of each command, named by its registry row; Authorize has
// already checked the issuer's membership (authz.checkIssuer).

func authorizeSubmit(a *authz, c Command) error {
	s := c.(*SubmitBuilds)
	if err := a.roles(true, true, true); err != nil {
		return err
	}
	if len(s.Builds) > MaxSubmitBuilds {
		return a.bad("", "%d builds, more than %d", len(s.Builds), MaxSubmitBuilds)
	}
	if len(s.SkipIfActive) > len(s.Builds) {
		return a.bad("", "%d skip-if-active flags for %d builds", len(s.SkipIfActive), len(s.Builds))
	}
	if len(s.Drvs) > MaxSubmitDrvs {
		return a.bad("", "%d derivations, more than %d", len(s.Drvs), MaxSubmitDrvs)
	}
	for i := range s.Builds {
		b := &s.Builds[i]
		if b.Priority < -MaxPriority || b.Priority > MaxPriority {
			return a.bad("of "+b.Derivation, "priority %d outside ±%d", b.Priority, MaxPriority)
		}
		if len(b.Tags) > MaxTags {
			return a.bad("of "+b.Derivation, "%d tags, more than %d", len(b.Tags), MaxTags)
		}
		for k, v := range b.Tags {
			if len(k) > MaxTagLen || len(v) > MaxTagLen {
				return a.bad("of "+b.Derivation, "a tag of %d+%d bytes; keys and values hold at most %d", len(k), len(v), MaxTagLen)
			}
		}
	}
	return nil
}

func authorizeCancel(a *authz, c Command) error {
	if err := a.roles(false, true, true); err != nil {
		return err
	}
	if n := len(c.(*CancelBuilds).IDs); n > MaxCommandItems {
		return a.bad("", "%d ids, more than %d", n, MaxCommandItems)
	}
	return nil
}

// authorizeLeader admits the leader only.
func authorizeLeader(a *authz, _ Command) error { return a.roles(true, false, false) }

func authorizeRequeue(a *authz, c Command) error {
	if a.p.Leader {
		return nil
	}
	node := c.(*RequeueNode).Node
	if err := a.self("of node "+node, node); err != nil {
		return a.deny("of node "+node, "only the leader or the node itself may requeue its builds")
	}
	return nil
}

func authorizeStart(a *authz, c Command) error {
	s := c.(*StartBuild)
	return a.assigned(s.ID, s.Node)
}

func authorizeFinish(a *authz, c Command) error {
	f := c.(*FinishBuild)
	return a.assigned(f.ID, f.Node)
}

func authorizeFinishOutputs(a *authz, c Command) error {
	f := c.(*FinishOutputs)
	if err := a.assigned(f.Finish.ID, f.Finish.Node); err != nil {
		return err
	}
	return a.holder(&f.NarInfos)
}

func authorizePutNars(a *authz, c Command) error { return a.holder(c.(*PutNarInfos)) }

func authorizeSetHolder(a *authz, c Command) error {
	s := c.(*SetNarHolder)
	return a.self("of nar "+s.Hash, s.Node)
}

func authorizePutNode(a *authz, c Command) error {
	n := &c.(*PutNode).Node
	about := "of node " + n.Name
	if n.Kind != "" && n.Kind != KindTrusted && n.Kind != KindVolunteer {
		return a.bad(about, "kind %q is neither %q nor %q", n.Kind, KindTrusted, KindVolunteer)
	}
	if !n.Trusted() && n.Voter {
		return a.bad(about, "a volunteer is never a voter")
	}
	old := a.t.getNode(n.Name)
	switch {
	case a.p.Admin:
		return nil
	case a.p.Leader && old == nil:
		if n.Name == a.p.Node {
			return nil // the bootstrap node records itself
		}
		return a.deny(about, "the leader records no new node but itself; the join path does")
	case a.p.Leader || n.Name == a.p.Node:
		if old == nil {
			return a.deny(about, "no such member")
		}
		return a.addressesOnly(about, old, n)
	}
	return a.deny(about, "only an admin, the leader or the node itself may write its record")
}

// addressesOnly refuses a record new that changes anything of old but
// the addresses HTTP, Raft and P2P.
func (a *authz) addressesOnly(about string, old, new *Node) error {
	o, n := old.normalized(), new.normalized()
	var field string
	switch {
	case o.Kind != n.Kind:
		field = "kind"
	case o.Owner != n.Owner:
		field = "owner"
	case o.CertFingerprint != n.CertFingerprint:
		field = "cert_fingerprint"
	case o.NixKey != n.NixKey:
		field = "key"
	case o.PeerID != n.PeerID:
		field = "peer_id"
	case o.Voter != n.Voter:
		field = "voter"
	case o.Revoked != n.Revoked || !o.RevokedAt.Equal(n.RevokedAt):
		field = "revoked"
	case !o.AdmittedAt.Equal(n.AdmittedAt):
		field = "admitted_at"
	default:
		return nil
	}
	return a.deny(about, "only its addresses may change, not its %s", field)
}

func authorizeRemoveNode(a *authz, _ Command) error { return a.roles(false, true, false) }

func authorizeSetSettings(a *authz, c Command) error {
	if a.p.Admin {
		return nil
	}
	if !a.p.Leader {
		return a.roles(false, true, false)
	}
	cur := a.t.b[bkMeta].Get([]byte("settings"))
	if cur == nil {
		return nil // bootstrap
	}
	want, err := json.Marshal(c.(*SetSettings).Settings)
	if err != nil {
		return a.bad("", "encode settings: %v", err)
	}
	if !bytes.Equal(cur, want) {
		return a.deny("", "the leader writes settings only at bootstrap; changes need an admin")
	}
	return nil
}

// getNode returns a node's record (decodeNode), or nil; a stored record
// that does not decode panics.
func (t *txn) getNode(name string) *Node {
	data := t.b[bkNodes].Get([]byte(name))
	if data == nil {
		return nil
	}
	n, err := decodeNode(data)
	if err != nil {
		panic(fmt.Sprintf("consensus: stored node %s: %v", name, err))
	}
	return n
}
