package consensus

import (
	"fmt"
	"reflect"
	"strings"

	bolt "go.etcd.io/bbolt"
)

// Authorization: who may issue which command, decided from the command,
// its issuer and the current state. The leader calls FSM.Authorize before
// it commits a command (docs/trust.md, "Authority"); replicas do not
// authorize again when they apply, so a rule may change between versions
// without replicas diverging on old log entries. Each registry row names
// its rule (commandDef.authorize).

// Bounds on one command's content, checked by Authorize for every issuer.
// They keep one request from growing the raft log and every replica's
// state without limit; a client with more work sends several commands.
// Content outside them is refused with ErrBadCommand.
const (
	// MaxSubmitBuilds is the most builds one SubmitBuilds may carry.
	MaxSubmitBuilds = 100_000
	// MaxSubmitDrvs is the most derivation records one SubmitBuilds may
	// carry.
	MaxSubmitDrvs = 100_000
	// MaxPriority bounds a build's priority: it must lie within
	// [-MaxPriority, MaxPriority].
	MaxPriority = 1_000_000
	// MaxTags is the most tags one build may carry; MaxTagLen bounds the
	// bytes of each tag key and value.
	MaxTags   = 64
	MaxTagLen = 256
	// MaxCommandItems bounds the ids of CancelBuilds and the nars of
	// PutNarInfos and FinishOutputs.
	MaxCommandItems = 100_000
)

// Principal is who issued a command: the node that sent it (from its
// verified certificate) and the roles it holds for this command.
//
// Roles: Leader is the raft leader's own loops (scheduler, reconciler,
// hooks, bootstrap); Admin is a client holding an admin token, checked
// by the trusted node named in Node; User is a client's user token,
// checked the same way (today admin tokens are the only user tokens).
// A principal with no role is a member speaking for itself.
//
// Trusted and Owner are what the issuing node's record says (NodePrincipal
// fills them). Authorize decides from the state's own record of Node,
// and refuses a principal whose Trusted disagrees with it.
type Principal struct {
	Node    string // the issuing node's name; "" for none
	Leader  bool
	Admin   bool
	User    bool
	Trusted bool
	Owner   string
}

// LeaderPrincipal is the raft leader named name, issuing from its own
// loops. Only a trusted node leads.
func LeaderPrincipal(name string) Principal {
	return Principal{Node: name, Leader: true, Trusted: true}
}

// NodePrincipal is the member whose record is rec, speaking for itself
// (a worker's reports, its own nars and addresses); nil is no node.
func NodePrincipal(rec *Node) Principal {
	if rec == nil {
		return Principal{}
	}
	return Principal{Node: rec.Name, Trusted: rec.Trusted(), Owner: rec.OwnerName()}
}

// AdminPrincipal is a client whose admin token the node viaNode checked.
func AdminPrincipal(viaNode string) Principal {
	return Principal{Node: viaNode, Admin: true, Trusted: true}
}

// UserPrincipal is a client whose user token the node viaNode checked.
func UserPrincipal(viaNode string) Principal {
	return Principal{Node: viaNode, User: true, Trusted: true}
}

// String names the principal for errors and logs: "leader n1",
// "admin via n1", "user via n1", "node n1", or "no node".
func (p Principal) String() string {
	node := p.Node
	if node == "" {
		node = `""`
	}
	switch {
	case p.Leader:
		return "leader " + node
	case p.Admin:
		return "admin via " + node
	case p.User:
		return "user via " + node
	case p.Node == "":
		return "no node"
	}
	return "node " + node
}

// Authorize reports whether p may issue cmd in the current state: nil
// when it may, an error wrapping ErrUnauthorized that says why when it
// may not, or one wrapping ErrBadCommand when the content exceeds the
// bounds above (MaxSubmitBuilds, ...). It only reads. The rules:
//
//   - Every issuer but the leader must be a member whose record is not
//     revoked. A volunteer's node never acts as leader or admin, nor
//     relays a user token.
//   - SubmitBuilds: a user or admin, or the leader (builds for missing
//     inputs). CancelBuilds: a user or admin.
//   - AssignBuilds, AckEvents, FailQueued, ClearWaiting: the leader.
//   - RequeueNode: the leader, or a node for its own name (hand-back).
//   - StartBuild, FinishBuild, FinishOutputs: the node the command names,
//     which must be the issuer and the build's current node, whatever its
//     roles; FinishOutputs' nars must name it as their only holder.
//   - PutNarInfos, SetNarHolder: a node about itself (Holder, Node).
//   - PutNode: an admin (the join path); the leader for its own record
//     when it has none (bootstrap) or for the addresses of an existing
//     record (reconciliation); a node for the addresses (HTTP, Raft, P2P)
//     of its own record, nothing else of it.
//   - RemoveNode: an admin. SetSettings: an admin, or the leader while
//     the mesh has no settings (bootstrap) or to write the same ones again.
//   - Unknown command types: refused.
//
// A refusal of a node's report about a build that is no longer its own
// also wraps ErrBadTransition, as the apply would have: the build moved
// on, which the reporter handles as before.
func (f *FSM) Authorize(cmd Command, p Principal) error {
	if v := reflect.ValueOf(cmd); !v.IsValid() || v.Kind() == reflect.Pointer && v.IsNil() {
		return fmt.Errorf("nil command by %s: %w", p, ErrUnauthorized)
	}
	d := lookup(cmd.Type())
	if d == nil || d.authorize == nil {
		return fmt.Errorf("command type %d by %s: unknown command: %w", byte(cmd.Type()), p, ErrUnauthorized)
	}
	// The rules take the pointer types DecodeCommand returns.
	if reflect.TypeOf(cmd) != reflect.TypeOf(d.new()) {
		return fmt.Errorf("command %T by %s: not a %T: %w", cmd, p, d.new(), ErrBadCommand)
	}
	return f.view(func(tx *bolt.Tx) error {
		a := &authz{t: newTxn(tx), p: p, cmd: cmd}
		if p.Node != "" {
			a.rec = a.t.getNode(p.Node)
		}
		if err := a.checkIssuer(); err != nil {
			return err
		}
		return d.authorize(a, cmd)
	})
}

// authz is one authorization: a read view of the state, the issuer and
// the state's record of the issuer's node (nil when there is none).
type authz struct {
	t   *txn
	p   Principal
	rec *Node
	cmd Command
}

// deny is a refusal of the command (about qualifies it, as "of build X")
// with the reason.
func (a *authz) deny(about, format string, args ...any) error {
	return fmt.Errorf("%s by %s: %s: %w", a.what(about), a.p, fmt.Sprintf(format, args...), ErrUnauthorized)
}

// bad is a refusal of the command's content.
func (a *authz) bad(about, format string, args ...any) error {
	return fmt.Errorf("%s: %s: %w", a.what(about), fmt.Sprintf(format, args...), ErrBadCommand)
}

func (a *authz) what(about string) string {
	s := strings.TrimPrefix(fmt.Sprintf("%T", a.cmd), "*consensus.")
	if about != "" {
		s += " " + about
	}
	return s
}

// checkIssuer applies the rules for every command: membership,
// revocation, and trusted roles only for trusted nodes.
func (a *authz) checkIssuer() error {
	p := a.p
	trusted := p.Trusted
	if a.rec != nil {
		trusted = a.rec.Trusted()
		if p.Trusted && !trusted {
			return a.deny("", "node %q is recorded as a volunteer, not trusted", p.Node)
		}
	}
	if (p.Leader || p.Admin) && !trusted {
		return a.deny("", "a volunteer's node never acts as leader or admin")
	}
	if p.Leader {
		return nil
	}
	switch {
	case p.Node == "":
		return a.deny("", "no issuing node")
	case a.rec == nil:
		return a.deny("", "node %q is not a member", p.Node)
	case a.rec.Revoked:
		return a.deny("", "node %q is revoked", p.Node)
	case p.User && !trusted:
		return a.deny("", "a volunteer's node does not take user requests")
	}
	return nil
}

// roles refuses the command unless the issuer holds one of the roles
// marked true.
func (a *authz) roles(leader, admin, user bool) error {
	p := a.p
	if leader && p.Leader || admin && p.Admin || user && p.User {
		return nil
	}
	var names []string
	for _, r := range []struct {
		ok   bool
		name string
	}{{leader, "the leader"}, {admin, "an admin"}, {user, "a user"}} {
		if r.ok {
			names = append(names, r.name)
		}
	}
	return a.deny("", "only %s may issue it", strings.Join(names, " or "))
}

// self refuses the command unless the issuer is the node named node.
func (a *authz) self(about, node string) error {
	switch {
	case node == "":
		return a.deny(about, "it names no node; a node speaks for itself")
	case node != a.p.Node:
		return a.deny(about, "it names node %q; a node speaks only for itself", node)
	}
	return nil
}

// assigned refuses a report about build id from node unless node is the
// issuer and the build's current node.
func (a *authz) assigned(id, node string) error {
	about := "of build " + id
	if err := a.self(about, node); err != nil {
		return err
	}
	b, _, err := a.t.getBuild(id)
	if err != nil {
		return fmt.Errorf("%s: %w", a.what(about), err)
	}
	if b.Node != node {
		on := "no node"
		if b.Node != "" {
			on = b.Node
		}
		return fmt.Errorf("%w (%w)", a.deny(about, "the build is assigned to %s", on), ErrBadTransition)
	}
	return nil
}

// holder refuses nars reported for anyone but the issuer.
func (a *authz) holder(c *PutNarInfos) error {
	if len(c.NarInfos) > MaxCommandItems {
		return a.bad("", "%d nars, more than %d", len(c.NarInfos), MaxCommandItems)
	}
	if err := a.self("", c.Holder); err != nil {
		return err
	}
	for i := range c.NarInfos {
		for _, h := range c.NarInfos[i].Holders {
			if h != a.p.Node {
				return a.deny("of "+c.NarInfos[i].StorePath, "it names holder %q; a node speaks only for itself", h)
			}
		}
	}
	return nil
}
