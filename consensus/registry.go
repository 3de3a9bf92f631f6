package consensus

import (
	"fmt"
	"time"
)

// The command registry: one row per command type says everything the
// package and its callers need to know about it, so adding a command is
// one constant, one struct with its Type method, one handler, one
// authorization rule and one row (registry_test.go fails when a constant
// has no row or a row no rule). Consul registers its commands the same
// way.

// Issuer is a set of roles that may issue a command, as bits: the
// contract in brief, for documentation and tooling (Issuers). The rule
// FSM.Authorize enforces is the row's authorize function, which also
// reads the command and the state. Bits are append-only like
// CommandType.
type Issuer uint8

// Issuer roles.
const (
	// IssuerAnyMember: any admitted node, about itself only (the Holder
	// or Node a command names must be the issuer).
	IssuerAnyMember Issuer = 1 << 0
	// IssuerAssignedNode: the node a build is scheduled or running on,
	// about that build (the command's Node is the build's Node and the
	// issuer).
	IssuerAssignedNode Issuer = 1 << 1
	// IssuerLeader: the raft leader's own loops (scheduler, membership
	// reconciler, hooks, bootstrap).
	IssuerLeader Issuer = 1 << 2
	// IssuerUser: a client's write request (bearer token), relayed by the
	// node that received it.
	IssuerUser Issuer = 1 << 3
	// IssuerAdmin: a client holding the admin token.
	IssuerAdmin Issuer = 1 << 4
)

var issuerNames = []string{"any-member", "assigned-node", "leader", "user", "admin"}

// Has reports whether every role of r is in i.
func (i Issuer) Has(r Issuer) bool { return i&r == r }

// String lists the roles joined by "|".
func (i Issuer) String() string {
	s := ""
	for b, name := range issuerNames {
		if i&(1<<b) != 0 {
			if s != "" {
				s += "|"
			}
			s += name
		}
	}
	if s == "" {
		return "none"
	}
	return s
}

// applyCtx is what a handler knows of its log entry besides the command:
// the leader's time stamp and the entry's index.
type applyCtx struct {
	at    time.Time
	index uint64
}

// commandDef is one row of the registry.
type commandDef struct {
	name string
	// new allocates an empty command to decode a payload into.
	new func() Command
	// apply runs the command in a write transaction; it returns the
	// result or an error meaning the transaction is rolled back.
	apply func(t *txn, cmd Command, e applyCtx) (any, error)
	// idempotent commands may be applied again when the outcome of an
	// attempt is unknown (leadership lost mid-commit): a second
	// application changes nothing the first did not.
	idempotent bool
	// resultIDs extracts the build ids from the command's result; nil
	// when the result names none.
	resultIDs func(res any) []string
	// issuers may send the command (see Issuer): the contract in brief.
	issuers Issuer
	// authorize is the command's rule (FSM.Authorize): nil when the
	// issuer may send it, else why not. It only reads through a.
	authorize func(a *authz, cmd Command) error
}

// registry is indexed by CommandType; a zero row is an unknown type.
var registry = [...]commandDef{
	CmdSubmitBuilds: {
		name: "submit-builds",
		new:  func() Command { return &SubmitBuilds{} },
		apply: func(t *txn, c Command, e applyCtx) (any, error) {
			return t.submitBuilds(c.(*SubmitBuilds), e.at, e.index)
		},
		resultIDs: func(res any) []string {
			if r, ok := res.(*SubmitResult); ok && r != nil {
				return r.IDs
			}
			return nil
		},
		issuers:   IssuerUser | IssuerAdmin | IssuerLeader,
		authorize: authorizeSubmit,
	},
	CmdAssignBuilds: {
		name:       "assign-builds",
		new:        func() Command { return &AssignBuilds{} },
		apply:      func(t *txn, c Command, _ applyCtx) (any, error) { return t.assignBuilds(c.(*AssignBuilds)) },
		idempotent: true,
		resultIDs: func(res any) []string {
			if r, ok := res.(*AssignResult); ok && r != nil {
				return r.IDs
			}
			return nil
		},
		issuers:   IssuerLeader,
		authorize: authorizeLeader,
	},
	CmdStartBuild: {
		name:      "start-build",
		new:       func() Command { return &StartBuild{} },
		apply:     func(t *txn, c Command, e applyCtx) (any, error) { return nil, t.startBuild(c.(*StartBuild), e.at) },
		issuers:   IssuerAssignedNode,
		authorize: authorizeStart,
	},
	CmdFinishBuild: {
		name:      "finish-build",
		new:       func() Command { return &FinishBuild{} },
		apply:     func(t *txn, c Command, e applyCtx) (any, error) { return nil, t.finishBuild(c.(*FinishBuild), e.at) },
		issuers:   IssuerAssignedNode,
		authorize: authorizeFinish,
	},
	CmdCancelBuilds: {
		name:      "cancel-builds",
		new:       func() Command { return &CancelBuilds{} },
		apply:     func(t *txn, c Command, e applyCtx) (any, error) { return nil, t.cancelBuilds(c.(*CancelBuilds), e.at) },
		issuers:   IssuerUser | IssuerAdmin,
		authorize: authorizeCancel,
	},
	CmdRequeueNode: {
		name:       "requeue-node",
		new:        func() Command { return &RequeueNode{} },
		apply:      func(t *txn, c Command, e applyCtx) (any, error) { return t.requeueNode(c.(*RequeueNode), e.at) },
		idempotent: true,
		resultIDs:  requeueIDs,
		// The leader for a node it lost; a node for itself when it
		// hands its builds back.
		issuers:   IssuerLeader | IssuerAssignedNode,
		authorize: authorizeRequeue,
	},
	CmdPutNarInfos: {
		name:       "put-narinfos",
		new:        func() Command { return &PutNarInfos{} },
		apply:      func(t *txn, c Command, e applyCtx) (any, error) { return nil, t.putNarInfos(c.(*PutNarInfos), e.at) },
		idempotent: true,
		issuers:    IssuerAnyMember,
		authorize:  authorizePutNars,
	},
	CmdSetNarHolder: {
		name:       "set-nar-holder",
		new:        func() Command { return &SetNarHolder{} },
		apply:      func(t *txn, c Command, _ applyCtx) (any, error) { return nil, t.setNarHolder(c.(*SetNarHolder)) },
		idempotent: true,
		issuers:    IssuerAnyMember,
		authorize:  authorizeSetHolder,
	},
	CmdPutNode: {
		name:       "put-node",
		new:        func() Command { return &PutNode{} },
		apply:      func(t *txn, c Command, _ applyCtx) (any, error) { return nil, t.putNode(c.(*PutNode)) },
		idempotent: true,
		issuers:    IssuerLeader | IssuerAdmin | IssuerAnyMember,
		authorize:  authorizePutNode,
	},
	CmdRemoveNode: {
		name:      "remove-node",
		new:       func() Command { return &RemoveNode{} },
		apply:     func(t *txn, c Command, _ applyCtx) (any, error) { return nil, t.removeNode(c.(*RemoveNode)) },
		issuers:   IssuerAdmin,
		authorize: authorizeRemoveNode,
	},
	CmdAckEvents: {
		name:       "ack-events",
		new:        func() Command { return &AckEvents{} },
		apply:      func(t *txn, c Command, _ applyCtx) (any, error) { return nil, t.ackEvents(c.(*AckEvents)) },
		idempotent: true,
		issuers:    IssuerLeader,
		authorize:  authorizeLeader,
	},
	CmdSetSettings: {
		name:       "set-settings",
		new:        func() Command { return &SetSettings{} },
		apply:      func(t *txn, c Command, _ applyCtx) (any, error) { return nil, t.setSettings(c.(*SetSettings)) },
		idempotent: true,
		issuers:    IssuerLeader | IssuerAdmin,
		authorize:  authorizeSetSettings,
	},
	CmdClearWaiting: {
		name:       "clear-waiting",
		new:        func() Command { return &ClearWaiting{} },
		apply:      func(t *txn, c Command, _ applyCtx) (any, error) { return nil, t.clearWaiting(c.(*ClearWaiting)) },
		idempotent: true,
		issuers:    IssuerLeader,
		authorize:  authorizeLeader,
	},
	CmdFinishOutputs: {
		name: "finish-outputs",
		new:  func() Command { return &FinishOutputs{} },
		apply: func(t *txn, c Command, e applyCtx) (any, error) {
			return nil, t.finishOutputs(c.(*FinishOutputs), e.at)
		},
		issuers:   IssuerAssignedNode,
		authorize: authorizeFinishOutputs,
	},
	CmdFailQueued: {
		name:       "fail-queued",
		new:        func() Command { return &FailQueued{} },
		apply:      func(t *txn, c Command, e applyCtx) (any, error) { return t.failQueued(c.(*FailQueued), e.at) },
		idempotent: true,
		resultIDs:  requeueIDs,
		issuers:    IssuerLeader,
		authorize:  authorizeLeader,
	},
}

// requeueIDs is the resultIDs of commands whose result is *RequeueResult.
func requeueIDs(res any) []string {
	if r, ok := res.(*RequeueResult); ok && r != nil {
		return r.IDs
	}
	return nil
}

// lookup returns the row of t, or nil for an unknown type.
func lookup(t CommandType) *commandDef {
	if int(t) >= len(registry) || registry[t].new == nil {
		return nil
	}
	return &registry[t]
}

// newCommand returns an empty command of a known type, or nil.
func newCommand(t CommandType) Command {
	if d := lookup(t); d != nil {
		return d.new()
	}
	return nil
}

// String is the command's name, or its number when unknown.
func (t CommandType) String() string {
	if d := lookup(t); d != nil {
		return d.name
	}
	return fmt.Sprintf("command-%d", byte(t))
}

// Idempotent reports whether cmd may be applied again when raft cannot
// tell whether an attempt committed (leadership lost mid-commit): a
// second application changes nothing the first did not. Unknown types
// are not.
func Idempotent(cmd Command) bool {
	d := lookup(cmd.Type())
	return d != nil && d.idempotent
}

// ResultIDs returns the build ids a command's result names (the created,
// assigned, requeued or failed builds), or nil for a result that names
// none.
func ResultIDs(res any) []string {
	for i := range registry {
		if f := registry[i].resultIDs; f != nil {
			if ids := f(res); ids != nil {
				return ids
			}
		}
	}
	return nil
}

// Issuers returns the roles that may issue commands of type t; none for
// an unknown type.
func Issuers(t CommandType) Issuer {
	if d := lookup(t); d != nil {
		return d.issuers
	}
	return 0
}

// CommandTypes lists the known command types in ascending order.
func CommandTypes() []CommandType {
	var out []CommandType
	for i := range registry {
		if registry[i].new != nil {
			out = append(out, CommandType(i))
		}
	}
	return out
}
