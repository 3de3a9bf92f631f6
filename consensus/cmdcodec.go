package consensus

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"time"
)

// Command payloads. Every type accepts a JSON payload (it starts with '{').
// The two commands that carry thousands of items, SubmitBuilds and
// AssignBuilds, are encoded in a versioned binary form instead: a version
// byte (cmdPayloadV1), then the fields as in codec.go, and nothing after
// them. A payload that is neither fails to decode, and every replica
// rejects its entry alike (FSM.ApplyBatch). Version 2 of SubmitBuilds
// adds, after the derivations, the indexes of the builds whose
// SkipIfActive is set; a submission without such builds is still
// written as version 1, which replicas of before version 2 read.
const (
	cmdPayloadV1 = 1
	cmdPayloadV2 = 2
)

// encodePayload appends the payload of cmd to buf.
func encodePayload(buf []byte, cmd Command) ([]byte, error) {
	switch c := cmd.(type) {
	case *SubmitBuilds:
		return encodeSubmit(buf, c), nil
	case *AssignBuilds:
		return encodeAssign(buf, c), nil
	}
	payload, err := json.Marshal(cmd)
	if err != nil {
		return nil, err
	}
	return append(buf, payload...), nil
}

// decodePayload decodes data into cmd, an empty command of its type.
func decodePayload(data []byte, cmd Command) error {
	if len(data) > 0 && data[0] == cmdPayloadV1 {
		switch c := cmd.(type) {
		case *SubmitBuilds:
			return decodeSubmit(data[1:], c, false)
		case *AssignBuilds:
			return decodeAssign(data[1:], c)
		}
	}
	if c, ok := cmd.(*SubmitBuilds); ok && len(data) > 0 && data[0] == cmdPayloadV2 {
		return decodeSubmit(data[1:], c, true)
	}
	if len(data) == 0 || data[0] != '{' {
		return fmt.Errorf("payload version: %w", ErrBadCommand)
	}
	return json.Unmarshal(data, cmd)
}

func encodeSubmit(buf []byte, c *SubmitBuilds) []byte {
	e := enc{b: slices.Grow(buf, 8+len(c.Builds)*96)}
	var skip []uint64
	for i, s := range c.SkipIfActive {
		if s {
			skip = append(skip, uint64(i))
		}
	}
	if len(skip) > 0 {
		e.b = append(e.b, cmdPayloadV2)
	} else {
		e.b = append(e.b, cmdPayloadV1)
	}
	e.uint(uint64(len(c.Builds)))
	for i := range c.Builds {
		e.build(&c.Builds[i])
	}
	e.uint(uint64(len(c.Drvs)))
	for i := range c.Drvs {
		d := &c.Drvs[i]
		e.str(d.Path)
		e.str(d.System)
		keys := sortedKeys(d.InputDrvs)
		e.uint(uint64(len(keys)))
		for _, k := range keys {
			e.str(k)
			e.strs(d.InputDrvs[k])
		}
		e.strs(d.InputSrcs)
		keys = sortedKeys(d.Outputs)
		e.uint(uint64(len(keys)))
		for _, k := range keys {
			e.str(k)
			e.str(d.Outputs[k])
		}
		e.strs(d.Features)
	}
	if len(skip) > 0 {
		e.uint(uint64(len(skip)))
		for _, i := range skip {
			e.uint(i)
		}
	}
	return e.b
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func decodeSubmit(data []byte, c *SubmitBuilds, v2 bool) error {
	d := newDec(data)
	if n := d.count(); n > 0 {
		c.Builds = make([]Build, n)
		for i := range c.Builds {
			d.build(&c.Builds[i])
		}
	}
	if n := d.count(); n > 0 {
		c.Drvs = make([]Drv, n)
		for i := range c.Drvs {
			v := &c.Drvs[i]
			v.Path = d.str()
			v.System = d.str()
			if m := d.count(); m > 0 {
				v.InputDrvs = make(map[string][]string, m)
				for ; m > 0 && d.err == nil; m-- {
					k := d.str()
					v.InputDrvs[k] = d.strs()
				}
			}
			v.InputSrcs = d.strs()
			if m := d.count(); m > 0 {
				v.Outputs = make(map[string]string, m)
				for ; m > 0 && d.err == nil; m-- {
					k := d.str()
					v.Outputs[k] = d.str()
				}
			}
			v.Features = d.strs()
		}
	}
	if v2 {
		decodeSkip(&d, c)
	}
	d.end()
	return d.err
}

// decodeSkip reads version 2's indexes of the builds to skip if active:
// at least one, each a build of the command, ascending.
func decodeSkip(d *dec, c *SubmitBuilds) {
	n := d.count()
	if n == 0 && d.err == nil {
		d.err = fmt.Errorf("no skip-if-active builds in a version 2 payload: %w", ErrBadCommand)
	}
	c.SkipIfActive = make([]bool, len(c.Builds))
	last := -1
	for ; n > 0 && d.err == nil; n-- {
		i := d.uint()
		if i >= uint64(len(c.Builds)) || int(i) <= last {
			d.err = fmt.Errorf("skip-if-active build %d of %d: %w", i, len(c.Builds), ErrBadCommand)
			return
		}
		c.SkipIfActive[i], last = true, int(i)
	}
}

func encodeAssign(buf []byte, c *AssignBuilds) []byte {
	e := enc{b: slices.Grow(buf, 8+len(c.Assignments)*48)}
	e.b = append(e.b, cmdPayloadV1)
	e.uint(uint64(len(c.Assignments)))
	for _, a := range c.Assignments {
		e.str(a.BuildID)
		e.str(a.Node)
	}
	return e.b
}

func decodeAssign(data []byte, c *AssignBuilds) error {
	d := newDec(data)
	if n := d.count(); n > 0 {
		c.Assignments = make([]Assignment, n)
		for i := range c.Assignments {
			c.Assignments[i] = Assignment{BuildID: d.str(), Node: d.str()}
		}
	}
	d.end()
	return d.err
}

// Event records: the sequence number is the key; the value is eventRecordV1,
// the type's index in eventCodes, the 16-byte build key and the time as a
// zigzag varint of unix nanoseconds. Values starting with '{' are the JSON
// records of earlier versions (in old snapshots) and are still read.
const eventRecordV1 = 1

// eventCodes numbers the event types in records; append-only.
var eventCodes = []string{
	EventBuildSubmitted, EventBuildStarted, EventBuildSucceeded,
	EventBuildFailed, EventBuildCanceled, EventBuildMissingInputs,
	EventBuildMismatch,
}

// encodeEvent encodes an event of type typ for build key key at time at.
func encodeEvent(typ string, key []byte, at time.Time) []byte {
	return appendEvent(make([]byte, 0, 2+16+binaryMaxVarint), typ, key, at)
}

// appendEvent appends the record of an event to buf.
func appendEvent(buf []byte, typ string, key []byte, at time.Time) []byte {
	code := slices.Index(eventCodes, typ)
	if code < 0 || len(key) != 16 {
		panic(fmt.Sprintf("consensus: event %q of build %x", typ, key))
	}
	out := enc{b: append(buf, eventRecordV1, byte(code))}
	out.b = append(out.b, key...)
	out.time(at)
	return out.b
}

const binaryMaxVarint = 10

func decodeEvent(seq uint64, data []byte) (Event, error) {
	ev := Event{Seq: seq}
	if len(data) > 0 && data[0] == '{' {
		err := json.Unmarshal(data, &ev)
		ev.Seq = seq
		return ev, err
	}
	if len(data) == 0 || data[0] != eventRecordV1 {
		return ev, fmt.Errorf("event record version: %w", ErrBadSnapshot)
	}
	d := newDec(data[1:])
	code := int(d.byte())
	key := d.raw(16)
	ev.Time = d.time()
	d.end()
	if d.err != nil {
		return ev, fmt.Errorf("decode event %d: %w", seq, d.err)
	}
	if code >= len(eventCodes) {
		return ev, fmt.Errorf("event %d type %d: %w", seq, code, ErrBadSnapshot)
	}
	ev.Type = eventCodes[code]
	ev.BuildID = hex.EncodeToString([]byte(key))
	return ev, nil
}
