package consensus

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"time"
)

// Record encoding: builds and nar records (the two tables that reach
// millions of rows) use a compact binary form: a version byte, then fields
// in a fixed order as uvarint lengths/numbers and raw strings. Times are
// zigzag varints of unix nanoseconds, 0 meaning the zero time. The other
// tables are small and stored as JSON.
const (
	buildRecordV1 = 1
	narRecordV1   = 1
)

var (
	errShortRecord   = errors.New("truncated record")
	errTrailingBytes = errors.New("trailing bytes after record")
)

type enc struct{ b []byte }

func (e *enc) uint(v uint64) { e.b = binary.AppendUvarint(e.b, v) }
func (e *enc) int(v int64)   { e.b = binary.AppendVarint(e.b, v) }
func (e *enc) str(s string)  { e.uint(uint64(len(s))); e.b = append(e.b, s...) }
func (e *enc) time(t time.Time) {
	if t.IsZero() {
		e.int(0)
		return
	}
	e.int(t.UnixNano())
}
func (e *enc) strs(ss []string) {
	e.uint(uint64(len(ss)))
	for _, s := range ss {
		e.str(s)
	}
}

// dec reads a record. It works on one string copy of the record, so the
// decoded strings share it instead of being allocated one by one.
type dec struct {
	s   string
	err error
}

func newDec(data []byte) dec { return dec{s: string(data)} }

func (d *dec) uint() uint64 {
	if d.err != nil {
		return 0
	}
	var v uint64
	for i := 0; i < len(d.s) && i < binary.MaxVarintLen64; i++ {
		c := d.s[i]
		if c < 0x80 {
			if i == binary.MaxVarintLen64-1 && c > 1 {
				break // overflows 64 bits
			}
			d.s = d.s[i+1:]
			return v | uint64(c)<<(7*i)
		}
		v |= uint64(c&0x7f) << (7 * i)
	}
	d.err = errShortRecord
	return 0
}

func (d *dec) int() int64 {
	u := d.uint()
	v := int64(u >> 1)
	if u&1 != 0 {
		v = ^v
	}
	return v
}

func (d *dec) byte() byte {
	if d.err != nil {
		return 0
	}
	if len(d.s) == 0 {
		d.err = errShortRecord
		return 0
	}
	c := d.s[0]
	d.s = d.s[1:]
	return c
}

// raw returns the next n bytes.
func (d *dec) raw(n int) string {
	if d.err != nil {
		return ""
	}
	if len(d.s) < n {
		d.err = errShortRecord
		return ""
	}
	s := d.s[:n]
	d.s = d.s[n:]
	return s
}

func (d *dec) str() string {
	n := d.uint()
	if d.err != nil {
		return ""
	}
	if uint64(len(d.s)) < n {
		d.err = errShortRecord
		return ""
	}
	return d.raw(int(n))
}

func (d *dec) time() time.Time {
	v := d.int()
	if v == 0 {
		return time.Time{}
	}
	return time.Unix(0, v).UTC()
}

func (d *dec) count() int {
	n := d.uint()
	if n > uint64(len(d.s)) { // every element takes at least one byte
		d.err = errShortRecord
		return 0
	}
	return int(n)
}

// end fails the decode when bytes are left over.
func (d *dec) end() {
	if d.err == nil && len(d.s) != 0 {
		d.err = errTrailingBytes
	}
}

func (d *dec) strs() []string {
	n := d.count()
	if n == 0 {
		return nil
	}
	ss := make([]string, n)
	for i := range ss {
		ss[i] = d.str()
	}
	return ss
}

func encodeBuild(b *Build) []byte { return appendBuild(make([]byte, 0, 160), b) }

// appendBuild appends the record of b to buf.
func appendBuild(buf []byte, b *Build) []byte {
	e := enc{b: append(buf, buildRecordV1)}
	e.build(b)
	return e.b
}

// build appends every field of b (the record body, also used by the
// SubmitBuilds command payload).
func (e *enc) build(b *Build) {
	e.str(b.ID)
	e.str(b.Derivation)
	e.str(b.System)
	e.str(b.State)
	e.int(int64(b.Priority))
	e.uint(uint64(len(b.Tags)))
	if len(b.Tags) == 1 {
		for k, v := range b.Tags {
			e.str(k)
			e.str(v)
		}
	} else if len(b.Tags) > 1 {
		keys := make([]string, 0, len(b.Tags))
		for k := range b.Tags {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			e.str(k)
			e.str(b.Tags[k])
		}
	}
	e.str(b.Node)
	e.uint(uint64(len(b.Attempts)))
	for _, a := range b.Attempts {
		e.str(a.Node)
		e.time(a.StartedAt)
		e.time(a.FinishedAt)
		e.str(a.Result)
		e.str(a.Error)
	}
	e.uint(uint64(len(b.Outputs)))
	for _, o := range b.Outputs {
		e.str(o.Name)
		e.str(o.Path)
		e.str(o.NarHash)
		e.int(o.NarSize)
	}
	e.time(b.CreatedAt)
	e.time(b.StartedAt)
	e.time(b.FinishedAt)
	e.str(b.Error)
	e.time(b.DeferUntil)
	e.int(int64(b.Retries))
	e.strs(b.FailedNodes)
	e.strs(b.WaitingFor)
}

func decodeBuild(data []byte) (*Build, error) {
	if len(data) == 0 || data[0] != buildRecordV1 {
		return nil, fmt.Errorf("build record version: %w", ErrBadSnapshot)
	}
	d := newDec(data[1:])
	b := &Build{}
	d.build(b)
	if b.Tags == nil {
		b.Tags = map[string]string{}
	}
	if d.err != nil {
		return nil, fmt.Errorf("decode build: %w", d.err)
	}
	return b, nil
}

// build reads the fields written by enc.build into b; Tags stays nil when
// there are none.
func (d *dec) build(b *Build) {
	b.ID = d.str()
	b.Derivation = d.str()
	b.System = d.str()
	b.State = d.str()
	b.Priority = int(d.int())
	if n := d.count(); n > 0 {
		b.Tags = make(map[string]string, n)
		for ; n > 0 && d.err == nil; n-- {
			k := d.str()
			b.Tags[k] = d.str()
		}
	}
	b.Node = d.str()
	if n := d.count(); n > 0 {
		b.Attempts = make([]Attempt, n)
		for i := range b.Attempts {
			a := &b.Attempts[i]
			a.Node = d.str()
			a.StartedAt = d.time()
			a.FinishedAt = d.time()
			a.Result = d.str()
			a.Error = d.str()
		}
	}
	if n := d.count(); n > 0 {
		b.Outputs = make([]Output, n)
		for i := range b.Outputs {
			o := &b.Outputs[i]
			o.Name = d.str()
			o.Path = d.str()
			o.NarHash = d.str()
			o.NarSize = d.int()
		}
	}
	b.CreatedAt = d.time()
	b.StartedAt = d.time()
	b.FinishedAt = d.time()
	b.Error = d.str()
	b.DeferUntil = d.time()
	b.Retries = int(d.int())
	b.FailedNodes = d.strs()
	b.WaitingFor = d.strs()
}

func encodeNarInfo(n *NarInfo) []byte {
	e := enc{b: make([]byte, 0, 256)}
	e.b = append(e.b, narRecordV1)
	e.str(n.StorePath)
	e.str(n.NarHash)
	e.int(n.NarSize)
	e.strs(n.References)
	e.str(n.Deriver)
	e.str(n.System)
	e.str(n.CA)
	e.strs(n.Sigs)
	e.uint(uint64(len(n.Files)))
	for _, f := range n.Files {
		e.str(f.Compression)
		e.str(f.FileHash)
		e.int(f.FileSize)
	}
	e.strs(n.Holders)
	return e.b
}

func decodeNarInfo(data []byte) (*NarInfo, error) {
	if len(data) == 0 || data[0] != narRecordV1 {
		return nil, fmt.Errorf("nar record version: %w", ErrBadSnapshot)
	}
	d := newDec(data[1:])
	n := &NarInfo{}
	n.StorePath = d.str()
	n.NarHash = d.str()
	n.NarSize = d.int()
	n.References = d.strs()
	n.Deriver = d.str()
	n.System = d.str()
	n.CA = d.str()
	n.Sigs = d.strs()
	if c := d.count(); c > 0 {
		n.Files = make([]NarFile, c)
		for i := range n.Files {
			f := &n.Files[i]
			f.Compression = d.str()
			f.FileHash = d.str()
			f.FileSize = d.int()
		}
	}
	n.Holders = d.strs()
	if d.err != nil {
		return nil, fmt.Errorf("decode nar record: %w", d.err)
	}
	return n, nil
}
