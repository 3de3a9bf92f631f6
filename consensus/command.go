package consensus

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// CommandType numbers a raft command. The enum is append-only: numbers are
// never reused or renumbered. A type with SkipIfUnknown set is ignored by a
// replica that does not know it (rolling upgrades); an unknown type without
// it is rejected by every replica alike (ErrBadCommand, nothing changes).
// Each type has one row in the registry (registry.go).
type CommandType byte

// Command types.
const (
	CmdSubmitBuilds  CommandType = 1
	CmdAssignBuilds  CommandType = 2
	CmdStartBuild    CommandType = 3
	CmdFinishBuild   CommandType = 4
	CmdCancelBuilds  CommandType = 5
	CmdRequeueNode   CommandType = 6
	CmdPutNarInfos   CommandType = 7
	CmdSetNarHolder  CommandType = 8
	CmdPutNode       CommandType = 9
	CmdRemoveNode    CommandType = 10
	CmdAckEvents     CommandType = 11
	CmdSetSettings   CommandType = 12
	CmdClearWaiting  CommandType = 13
	CmdFinishOutputs CommandType = 14
	CmdFailQueued    CommandType = 15

	// SkipIfUnknown is or-ed into a type that older replicas may ignore.
	SkipIfUnknown CommandType = 0x80
)

// Command is one replicated change of the coordinator state.
type Command interface {
	Type() CommandType
}

// SubmitBuilds creates builds (state queued) and records derivation
// metadata. An empty Build.ID is filled deterministically from the command
// time and the log index; a given id must be new. A build whose
// SkipIfActive entry is true is created only if no queued, scheduled or
// building build of its derivation exists when the entry applies: the
// check runs in apply, so every replica decides alike and two racing
// submissions of the same input make one build. Result: *SubmitResult.
type SubmitBuilds struct {
	Builds []Build `json:"builds"`
	Drvs   []Drv   `json:"drvs,omitempty"`
	// SkipIfActive, when not empty, has one entry per build.
	SkipIfActive []bool `json:"skip_if_active,omitempty"`
}

// SubmitResult lists, in command order, the ids of the created builds;
// for a build skipped by SkipIfActive, the id of the active build of its
// derivation instead.
type SubmitResult struct {
	IDs []string
}

// Assignment gives one queued build to a node.
type Assignment struct {
	BuildID string `json:"build_id"`
	Node    string `json:"node"`
}

// AssignBuilds moves queued builds to scheduled on a node; builds that are
// no longer queued (or unknown) are skipped. Result: *AssignResult.
type AssignBuilds struct {
	Assignments []Assignment `json:"assignments"`
}

// AssignResult lists the ids actually assigned.
type AssignResult struct {
	IDs []string
}

// StartBuild moves a build scheduled on Node to building and opens an attempt.
type StartBuild struct {
	ID   string `json:"id"`
	Node string `json:"node"`
}

// FinishBuild ends the running attempt of a build on Node. Success needs
// every output's nar recorded (PutNarInfos first), else ErrOutputsMissing,
// and, when the build's derivation was submitted with its outputs
// (SubmitBuilds.Drvs), exactly the outputs it declares, else
// ErrBadCommand.
// A failure with retries left requeues the build with Node in FailedNodes,
// deferred by a delay that doubles with each failure (2 s, 4 s, ... 5 min).
// MissingInputs requeues it waiting for those store paths; when every one
// of them is held (its holders could not send it: down, paused), the
// build is deferred instead, 1 s doubling to 1 min for each such attempt
// in a row. Neither counts as a failure.
type FinishBuild struct {
	ID            string   `json:"id"`
	Node          string   `json:"node"`
	Success       bool     `json:"success"`
	Outputs       []Output `json:"outputs,omitempty"`
	Error         string   `json:"error,omitempty"`
	MissingInputs []string `json:"missing_inputs,omitempty"`
}

// CancelBuilds cancels unfinished builds; any unknown or finished id fails
// the whole command.
type CancelBuilds struct {
	IDs []string `json:"ids"`
}

// RequeueNode puts every scheduled or building build of a node back in the
// queue, recording a running attempt as lost. Result: *RequeueResult.
type RequeueNode struct {
	Node string `json:"node"`
}

// RequeueResult lists the requeued build ids.
type RequeueResult struct {
	IDs []string
}

// PutNarInfos records nars (by hash part) held by Holder, and clears
// those store paths from every build waiting for them. A nar reported
// with the NarHash already recorded adds its holders; one with another
// NarHash leaves the record and its holders alone and is kept in the
// path's Mismatch (FSM.Mismatch) instead, while the command's other nars
// still apply. A hash part recorded under another store path is
// ErrBadCommand.
type PutNarInfos struct {
	NarInfos []NarInfo `json:"narinfos"`
	Holder   string    `json:"holder,omitempty"`
}

// SetNarHolder adds or removes one node from a nar's holders.
type SetNarHolder struct {
	Hash    string `json:"hash"`
	Node    string `json:"node"`
	Present bool   `json:"present"`
}

// PutNode records (or replaces) a node's admission record.
type PutNode struct {
	Node Node `json:"node"`
}

// RemoveNode deletes a node's admission record and its nar holdings.
type RemoveNode struct {
	Name string `json:"name"`
}

// AckEvents removes handled events; unknown sequence numbers are ignored.
type AckEvents struct {
	Seqs []uint64 `json:"seqs"`
}

// SetSettings replaces the mesh settings.
type SetSettings struct {
	Settings Settings `json:"settings"`
}

// FinishOutputs records a succeeded build's output nars (as PutNarInfos)
// and its result (as FinishBuild) in one entry: one commit on the path
// from a built derivation to the dependents it frees. Either both apply
// or, when the finish is refused, neither. An output whose nar differs
// from the one recorded for its path starts or joins that path's
// Mismatch (a new one queues a build-mismatch event for the build), and
// the build succeeds with the recorded nar.
type FinishOutputs struct {
	NarInfos PutNarInfos `json:"narinfos"`
	Finish   FinishBuild `json:"finish"`
}

// FailQueued fails queued builds that cannot run, such as those whose
// input derivation failed for good, with Error as their error. Ids that
// are unknown or no longer queued are skipped, so the leader may send it
// again. Result: *RequeueResult, the ids failed.
type FailQueued struct {
	IDs   []string `json:"ids"`
	Error string   `json:"error"`
}

// ClearWaiting empties a queued build's WaitingFor list.
type ClearWaiting struct {
	BuildID string `json:"build_id"`
}

func (SubmitBuilds) Type() CommandType  { return CmdSubmitBuilds }
func (AssignBuilds) Type() CommandType  { return CmdAssignBuilds }
func (StartBuild) Type() CommandType    { return CmdStartBuild }
func (FinishBuild) Type() CommandType   { return CmdFinishBuild }
func (CancelBuilds) Type() CommandType  { return CmdCancelBuilds }
func (RequeueNode) Type() CommandType   { return CmdRequeueNode }
func (PutNarInfos) Type() CommandType   { return CmdPutNarInfos }
func (SetNarHolder) Type() CommandType  { return CmdSetNarHolder }
func (PutNode) Type() CommandType       { return CmdPutNode }
func (RemoveNode) Type() CommandType    { return CmdRemoveNode }
func (AckEvents) Type() CommandType     { return CmdAckEvents }
func (SetSettings) Type() CommandType   { return CmdSetSettings }
func (ClearWaiting) Type() CommandType  { return CmdClearWaiting }
func (FinishOutputs) Type() CommandType { return CmdFinishOutputs }
func (FailQueued) Type() CommandType    { return CmdFailQueued }

// EncodeCommand encodes a command stamped with time at (the leader's clock):
// [type byte][8-byte big-endian unix nanoseconds][payload]. The payload is
// JSON, except for SubmitBuilds and AssignBuilds, which use a versioned
// binary form (cmdcodec.go).
func EncodeCommand(cmd Command, at time.Time) ([]byte, error) {
	buf := make([]byte, 9, 256)
	buf[0] = byte(cmd.Type())
	binary.BigEndian.PutUint64(buf[1:9], uint64(at.UnixNano()))
	buf, err := encodePayload(buf, cmd)
	if err != nil {
		return nil, fmt.Errorf("encode command %d: %w", cmd.Type(), err)
	}
	return buf, nil
}

// decodeCommand decodes an entry. It returns (nil, at, nil) for an unknown
// type marked SkipIfUnknown and an error wrapping ErrBadCommand for
// anything undecodable.
func decodeCommand(data []byte) (Command, time.Time, error) {
	if len(data) < 9 {
		return nil, time.Time{}, fmt.Errorf("command entry of %d bytes: %w", len(data), ErrBadCommand)
	}
	t := CommandType(data[0])
	at := time.Unix(0, int64(binary.BigEndian.Uint64(data[1:9]))).UTC()
	cmd := newCommand(t)
	if cmd == nil {
		if t&SkipIfUnknown != 0 {
			return nil, at, nil
		}
		return nil, at, fmt.Errorf("unknown command type %d: %w", t, ErrBadCommand)
	}
	if err := decodePayload(data[9:], cmd); err != nil {
		if !errors.Is(err, ErrBadCommand) {
			err = fmt.Errorf("%w: %w", ErrBadCommand, err)
		}
		return nil, at, fmt.Errorf("decode command %s: %w", t, err)
	}
	return cmd, at, nil
}

// DecodeCommand decodes an entry made by EncodeCommand, for a leader that
// applies a command a follower forwarded. The time stamp is dropped: the
// leader stamps the command again when it applies it. A command of an
// unknown type is an error here, even with SkipIfUnknown: a leader never
// applies what it does not understand.
func DecodeCommand(data []byte) (Command, error) {
	cmd, _, err := decodeCommand(data)
	if err == nil && cmd == nil {
		err = fmt.Errorf("unknown command type %d: %w", data[0], ErrBadCommand)
	}
	return cmd, err
}
