package gossip

import (
	"fmt"
	"time"
)

// Status is a member's liveness as this node sees it.
type Status int

// Statuses. memberlist does not notify when it suspects a member, so this
// package reports a failing member as alive until memberlist declares it
// dead; StatusSuspect exists for callers that merge in other signals.
const (
	StatusAlive Status = iota
	StatusSuspect
	StatusDead
	StatusLeft
)

var statusNames = [...]string{"alive", "suspect", "dead", "left"}

// String returns "alive", "suspect", "dead" or "left".
func (s Status) String() string {
	if s >= 0 && int(s) < len(statusNames) {
		return statusNames[s]
	}
	return fmt.Sprintf("status(%d)", int(s))
}

// MarshalText encodes s as its name, for JSON.
func (s Status) MarshalText() ([]byte, error) {
	if s < 0 || int(s) >= len(statusNames) {
		return nil, fmt.Errorf("marshal status %d: unknown", int(s))
	}
	return []byte(statusNames[s]), nil
}

// UnmarshalText parses a name written by MarshalText.
func (s *Status) UnmarshalText(b []byte) error {
	for i, n := range statusNames {
		if n == string(b) {
			*s = Status(i)
			return nil
		}
	}
	return fmt.Errorf("unmarshal status %q: unknown", b)
}

// Member is one node of the mesh as this node knows it.
type Member struct {
	// Name is the node's unique name.
	Name string
	// Addr is the node's gossip address, host:port.
	Addr string
	// Meta is the node's latest meta. A member whose meta could not be
	// decoded keeps the zero Meta.
	Meta Meta
	// Status is alive, dead or left.
	Status Status
	// Changed is when this node last saw the member's status or meta change.
	Changed time.Time
}

// EventType says what happened to a member.
type EventType int

// Event types.
const (
	// EventJoin: a member became alive (new, or back from dead or left).
	EventJoin EventType = iota + 1
	// EventLeave: a member died or left; Member.Status says which.
	EventLeave
	// EventUpdate: an alive member changed its meta.
	EventUpdate
)

// String returns "join", "leave" or "update".
func (t EventType) String() string {
	switch t {
	case EventJoin:
		return "join"
	case EventLeave:
		return "leave"
	case EventUpdate:
		return "update"
	}
	return fmt.Sprintf("event(%d)", int(t))
}

// Event is one membership change, with the member as it is after it.
type Event struct {
	Type   EventType
	Member Member
}
