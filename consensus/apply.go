package consensus

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"time"
)

// exec applies one command in t and returns its result, nil, or an error
// value. The caller rolls the transaction back on an error, so a handler
// may fail after partial writes and still change nothing.
func (t *txn) exec(cmd Command, at time.Time, index uint64) (out any) {
	d := lookup(cmd.Type())
	if d == nil {
		panic(fmt.Sprintf("consensus: no handler for command %T", cmd))
	}
	defer func() {
		if r := recover(); r != nil {
			br, ok := r.(badRecord)
			if !ok {
				panic(r)
			}
			out = fmt.Errorf("apply %s at index %d: %w", cmd.Type(), index, br.err)
		}
	}()
	res, err := d.apply(t, cmd, applyCtx{at: at, index: index})
	if err != nil {
		return err
	}
	return res
}

// derivedBuildID is the id of the i-th build of the entry at index when the
// submitter left it empty: creation time at+i ns, then 8 bytes of
// sha256(index, i), identical on every replica.
func derivedBuildID(at time.Time, index uint64, i int) string {
	var seed [16]byte
	binary.BigEndian.PutUint64(seed[:8], index)
	binary.BigEndian.PutUint64(seed[8:], uint64(i))
	sum := sha256.Sum256(seed[:])
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(at.UnixNano()+int64(i)))
	copy(b[8:], sum[:8])
	return hex.EncodeToString(b[:])
}

func validDrvPath(p string) error {
	if _, err := HashPart(p); err != nil || !strings.HasSuffix(p, ".drv") || !strings.HasPrefix(p, "/") {
		return fmt.Errorf("derivation %q: %w", p, ErrBadCommand)
	}
	return nil
}

func (t *txn) submitBuilds(c *SubmitBuilds, at time.Time, index uint64) (*SubmitResult, error) {
	for _, d := range c.Drvs {
		if err := validDrvPath(d.Path); err != nil {
			return nil, err
		}
		t.putJSON(bkDrvs, []byte(d.Path), d)
	}
	settings := t.settings()
	res := &SubmitResult{IDs: make([]string, 0, len(c.Builds))}
	for i, in := range c.Builds {
		if err := validDrvPath(in.Derivation); err != nil {
			return nil, err
		}
		if in.System == "" {
			return nil, fmt.Errorf("build of %s has no system: %w", in.Derivation, ErrBadCommand)
		}
		if i < len(c.SkipIfActive) && c.SkipIfActive[i] {
			if active := t.activeBuildOf(in.Derivation); active != "" {
				res.IDs = append(res.IDs, active)
				continue
			}
		}
		id := in.ID
		if id == "" {
			id = derivedBuildID(at, index, i)
		}
		k, err := buildKey(id)
		if err != nil {
			return nil, err
		}
		if t.buildExists(k) {
			return nil, fmt.Errorf("build %s exists: %w", id, ErrBadCommand)
		}
		b := &Build{
			ID: id, Derivation: in.Derivation, System: in.System, State: StateQueued,
			Priority: in.Priority, Tags: in.Tags, CreatedAt: at,
			DeferUntil: in.DeferUntil, Retries: in.Retries,
		}
		if b.Tags == nil {
			b.Tags = map[string]string{}
		}
		if b.Retries == 0 {
			b.Retries = settings.Retries
		}
		b.WaitingFor = t.stillMissing(in.WaitingFor)
		t.putBuild(k, nil, b)
		t.addEvent(EventBuildSubmitted, k, at)
		res.IDs = append(res.IDs, id)
	}
	return res, nil
}

// activeBuildOf is the id of the newest queued, scheduled or building
// build of a derivation, or "".
func (t *txn) activeBuildOf(drv string) string {
	keys := t.prefixKeys(bkByDrv, append([]byte(drv), 0))
	for i := len(keys) - 1; i >= 0; i-- {
		id := hex.EncodeToString(keys[i][len(keys[i])-16:])
		b, _, err := t.getBuild(id)
		if err != nil {
			panic(fmt.Sprintf("consensus: derivation index names missing build %s", id))
		}
		if !Finished(b.State) {
			return id
		}
	}
	return ""
}

// stillMissing returns the sorted, deduplicated paths that no node holds.
func (t *txn) stillMissing(paths []string) []string {
	var out []string
	for _, p := range paths {
		if !t.pathPresent(p) && !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return out
}

func (t *txn) assignBuilds(c *AssignBuilds) (*AssignResult, error) {
	res := &AssignResult{}
	for _, a := range c.Assignments {
		if a.Node == "" {
			return nil, fmt.Errorf("assignment of %s has no node: %w", a.BuildID, ErrBadCommand)
		}
		b, k, err := t.getBuild(a.BuildID)
		if err != nil || b.State != StateQueued || len(b.WaitingFor) > 0 {
			continue // taken, canceled or waiting since the plan was made
		}
		old := *b
		b.State, b.Node = StateScheduled, a.Node
		t.putBuild(k, &old, b)
		res.IDs = append(res.IDs, a.BuildID)
	}
	return res, nil
}

func (t *txn) startBuild(c *StartBuild, at time.Time) error {
	b, k, err := t.getBuild(c.ID)
	if err != nil {
		return err
	}
	if b.State != StateScheduled || b.Node != c.Node {
		return fmt.Errorf("start build %s (%s on %q) on %q: %w", c.ID, b.State, b.Node, c.Node, ErrBadTransition)
	}
	old := *b
	b.State, b.StartedAt = StateBuilding, at
	b.Attempts = append(slices.Clone(b.Attempts), Attempt{Node: c.Node, StartedAt: at})
	t.putBuild(k, &old, b)
	t.addEvent(EventBuildStarted, k, at)
	return nil
}

func (t *txn) finishBuild(c *FinishBuild, at time.Time) error {
	b, k, err := t.getBuild(c.ID)
	if err != nil {
		return err
	}
	if (b.State != StateScheduled && b.State != StateBuilding) || b.Node != c.Node {
		return fmt.Errorf("finish build %s (%s on %q) from %q: %w", c.ID, b.State, b.Node, c.Node, ErrBadTransition)
	}
	old := *b
	b.Attempts = slices.Clone(b.Attempts)
	if b.State == StateScheduled {
		b.Attempts = append(b.Attempts, Attempt{Node: c.Node, StartedAt: at})
	}
	att := &b.Attempts[len(b.Attempts)-1]
	att.FinishedAt = at
	switch {
	case !c.Success && len(c.MissingInputs) > 0:
		att.Result = ResultMissingInputs
		b.State, b.Node = StateQueued, ""
		b.WaitingFor = t.stillMissing(c.MissingInputs)
		if len(b.WaitingFor) == 0 {
			// Every input is held, but no holder could send it (down,
			// paused): try again later, later each time in a row.
			b.DeferUntil = at.Add(backoff(trailing(b.Attempts, ResultMissingInputs), unreachableBase, unreachableCap))
		}
		t.addEvent(EventBuildMissingInputs, k, at)
	case c.Success:
		if err := t.checkDeclared(b.Derivation, c.Outputs); err != nil {
			return fmt.Errorf("finish build %s: %w", c.ID, err)
		}
		outs, err := t.checkOutputs(c.Outputs)
		if err != nil {
			return fmt.Errorf("finish build %s: %w", c.ID, err)
		}
		att.Result = ResultSucceeded
		b.State, b.Outputs, b.FinishedAt, b.Error = StateSucceeded, outs, at, ""
		t.addEvent(EventBuildSucceeded, k, at)
	default:
		att.Result, att.Error = ResultFailed, c.Error
		b.Error = c.Error
		failures := 0
		for _, a := range b.Attempts {
			if a.Result == ResultFailed {
				failures++
			}
		}
		if failures <= b.Retries {
			b.State, b.Node = StateQueued, ""
			b.DeferUntil = at.Add(backoff(failures, retryBase, retryCap))
			if !slices.Contains(b.FailedNodes, c.Node) {
				b.FailedNodes = append(slices.Clone(b.FailedNodes), c.Node)
			}
		} else {
			b.State, b.FinishedAt = StateFailed, at
			t.addEvent(EventBuildFailed, k, at)
		}
	}
	t.putBuild(k, &old, b)
	return nil
}

// The delays before a build runs again: after its n-th failure (a
// genuine retry), and after the n-th attempt in a row whose inputs were
// held but could not be fetched.
const (
	retryBase       = 2 * time.Second
	retryCap        = 5 * time.Minute
	unreachableBase = time.Second
	unreachableCap  = time.Minute
)

// backoff is base doubled for each n after the first, at most limit.
func backoff(n int, base, limit time.Duration) time.Duration {
	d := base
	for i := 1; i < n && d < limit; i++ {
		d *= 2
	}
	return min(d, limit)
}

// trailing counts the attempts at the end of atts with result r.
func trailing(atts []Attempt, r string) int {
	n := 0
	for i := len(atts) - 1; i >= 0 && atts[i].Result == r; i-- {
		n++
	}
	return n
}

// checkDeclared requires outputs to be exactly the outputs the
// derivation's record declares: each name once, each declared name
// present, and each path the declared one (a declared empty path, an
// output whose path is not known before the build, matches any). Without
// a record, or one that declares no outputs, there is nothing to check.
func (t *txn) checkDeclared(drvPath string, outs []Output) error {
	d := t.getDrv(drvPath)
	if d == nil || len(d.Outputs) == 0 {
		return nil
	}
	seen := make(map[string]bool, len(outs))
	for _, o := range outs {
		want, ok := d.Outputs[o.Name]
		switch {
		case !ok:
			return fmt.Errorf("output %q is not one %s declares: %w", o.Name, drvPath, ErrBadCommand)
		case seen[o.Name]:
			return fmt.Errorf("output %q twice: %w", o.Name, ErrBadCommand)
		case want != "" && o.Path != want:
			return fmt.Errorf("output %q at %s, %s declares %s: %w", o.Name, o.Path, drvPath, want, ErrBadCommand)
		}
		seen[o.Name] = true
	}
	for name := range d.Outputs {
		if !seen[name] {
			return fmt.Errorf("output %q of %s not reported: %w", name, drvPath, ErrBadCommand)
		}
	}
	return nil
}

// checkOutputs requires every output's nar to be recorded and held, and
// fills or checks its hash and size against the record.
func (t *txn) checkOutputs(outs []Output) ([]Output, error) {
	if len(outs) == 0 {
		return nil, fmt.Errorf("no outputs: %w", ErrBadCommand)
	}
	res := slices.Clone(outs)
	for i := range res {
		o := &res[i]
		h, err := HashPart(o.Path)
		if err != nil {
			return nil, err
		}
		n := t.getNar(h)
		if n == nil || len(n.Holders) == 0 || n.StorePath != o.Path {
			return nil, fmt.Errorf("output %s: %w", o.Path, ErrOutputsMissing)
		}
		if (o.NarHash != "" && o.NarHash != n.NarHash) || (o.NarSize != 0 && o.NarSize != n.NarSize) {
			return nil, fmt.Errorf("output %s: nar hash or size differs from its record: %w", o.Path, ErrBadCommand)
		}
		o.NarHash, o.NarSize = n.NarHash, n.NarSize
	}
	return res, nil
}

func (t *txn) failQueued(c *FailQueued, at time.Time) (*RequeueResult, error) {
	if c.Error == "" {
		return nil, fmt.Errorf("fail queued builds without an error: %w", ErrBadCommand)
	}
	res := &RequeueResult{}
	for _, id := range c.IDs {
		b, k, err := t.getBuild(id)
		if err != nil || b.State != StateQueued {
			continue
		}
		old := *b
		b.State, b.FinishedAt, b.Error, b.WaitingFor = StateFailed, at, c.Error, nil
		t.putBuild(k, &old, b)
		t.addEvent(EventBuildFailed, k, at)
		res.IDs = append(res.IDs, id)
	}
	return res, nil
}

func (t *txn) cancelBuilds(c *CancelBuilds, at time.Time) error {
	for _, id := range c.IDs {
		b, k, err := t.getBuild(id)
		if err != nil {
			return err
		}
		if Finished(b.State) {
			return fmt.Errorf("cancel build %s (%s): %w", id, b.State, ErrBadTransition)
		}
		old := *b
		if b.State == StateBuilding {
			b.Attempts = slices.Clone(b.Attempts)
			att := &b.Attempts[len(b.Attempts)-1]
			att.FinishedAt, att.Result = at, ResultCanceled
		}
		b.State, b.FinishedAt, b.WaitingFor = StateCanceled, at, nil
		t.putBuild(k, &old, b)
		t.addEvent(EventBuildCanceled, k, at)
	}
	return nil
}

func (t *txn) requeueNode(c *RequeueNode, at time.Time) (*RequeueResult, error) {
	if c.Node == "" {
		return nil, fmt.Errorf("requeue: no node: %w", ErrBadCommand)
	}
	res := &RequeueResult{}
	for _, st := range []string{StateScheduled, StateBuilding} {
		for _, ik := range t.prefixKeys(bkByState, []byte{stateCode(st)}) {
			id := hex.EncodeToString(ik[1:])
			b, k, err := t.getBuild(id)
			if err != nil {
				panic(fmt.Sprintf("consensus: state index names missing build %s", id))
			}
			if b.Node != c.Node {
				continue
			}
			old := *b
			if b.State == StateBuilding {
				b.Attempts = slices.Clone(b.Attempts)
				att := &b.Attempts[len(b.Attempts)-1]
				att.FinishedAt, att.Result = at, ResultLost
			}
			b.State, b.Node = StateQueued, ""
			t.putBuild(k, &old, b)
			res.IDs = append(res.IDs, id)
		}
	}
	return res, nil
}

func (t *txn) putNarInfos(c *PutNarInfos, at time.Time) error {
	_, _, err := t.recordNars(c, at, nil)
	return err
}

// narOrigin is the finishing build whose outputs a PutNarInfos reports.
type narOrigin struct {
	derivation string
	outputs    []Output
}

// recordNars records the nars of c (upsert by hash part). A nar whose
// path is recorded with another NarHash does not replace the record: it
// is added to the path's Mismatch instead. differ holds the store paths
// reported with another NarHash, created those whose Mismatch is new.
func (t *txn) recordNars(c *PutNarInfos, at time.Time, from *narOrigin) (differ map[string]bool, created []string, err error) {
	for _, in := range c.NarInfos {
		h, err := HashPart(in.StorePath)
		if err != nil {
			return nil, nil, err
		}
		if in.NarHash == "" || in.NarSize <= 0 {
			return nil, nil, fmt.Errorf("nar of %s has no hash or size: %w", in.StorePath, ErrBadCommand)
		}
		old := t.getNar(h)
		if old != nil && old.StorePath != in.StorePath {
			return nil, nil, fmt.Errorf("nar of %s: hash part recorded for %s: %w", in.StorePath, old.StorePath, ErrBadCommand)
		}
		reporters := mergeHolders(in.Holders, c.Holder)
		if old != nil && old.NarHash != in.NarHash {
			if differ == nil {
				differ = map[string]bool{}
			}
			differ[in.StorePath] = true
			if t.noteMismatch(old, &in, reporters, at, from, true) {
				created = append(created, in.StorePath)
			}
			continue
		}
		if old != nil {
			t.noteMismatch(old, &in, reporters, at, from, false)
		}
		n := in
		var holders []string
		if old != nil {
			holders = old.Holders
		}
		n.Holders = mergeHolders(holders, reporters)
		t.putNar(h, old, &n)
		if len(n.Holders) > 0 {
			t.pathArrived(n.StorePath)
		}
	}
	return differ, created, nil
}

// noteMismatch adds the report in (by reporters) of old's store path to
// the path's Mismatch. With create it starts a Mismatch from the record
// old when there is none; without, it adds only to an existing one. It
// reports whether it started one.
func (t *txn) noteMismatch(old, in *NarInfo, reporters []string, at time.Time, from *narOrigin, create bool) bool {
	m := t.getMismatch(old.StorePath)
	if m == nil && !create {
		return false
	}
	isNew, changed := m == nil, m == nil
	if isNew {
		m = &Mismatch{Path: old.StorePath}
		for _, node := range orEmpty(old.Holders) {
			m.add(MismatchResult{Node: node, NarHash: old.NarHash, NarSize: old.NarSize})
		}
	}
	for _, node := range orEmpty(reporters) {
		changed = m.add(MismatchResult{Node: node, NarHash: in.NarHash, NarSize: in.NarSize, At: at}) || changed
	}
	if from != nil && m.Derivation == "" && old.NarHash != in.NarHash {
		m.Derivation = from.derivation
		for _, o := range from.outputs {
			if o.Path == old.StorePath {
				m.Output = o.Name
			}
		}
		changed = true
	}
	if changed {
		t.putJSON(bkMismatches, []byte(m.Path), m)
	}
	return isNew
}

// add appends r unless the same node already reported the same nar; it
// reports whether it appended.
func (m *Mismatch) add(r MismatchResult) bool {
	for _, x := range m.Results {
		if x.Node == r.Node && x.NarHash == r.NarHash {
			return false
		}
	}
	m.Results = append(m.Results, r)
	return true
}

// orEmpty is nodes, or one empty name when there are none.
func orEmpty(nodes []string) []string {
	if len(nodes) == 0 {
		return []string{""}
	}
	return nodes
}

func mergeHolders(lists ...any) []string {
	var out []string
	add := func(s string) {
		if s != "" && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	for _, l := range lists {
		switch v := l.(type) {
		case string:
			add(v)
		case []string:
			for _, s := range v {
				add(s)
			}
		}
	}
	slices.Sort(out)
	return out
}

// pathArrived removes a store path from every build waiting for it.
func (t *txn) pathArrived(storePath string) {
	prefix := append([]byte(storePath), 0)
	for _, wk := range t.prefixKeys(bkWaiting, prefix) {
		id := hex.EncodeToString(wk[len(prefix):])
		b, k, err := t.getBuild(id)
		if err != nil {
			panic(fmt.Sprintf("consensus: waiting index names missing build %s", id))
		}
		old := *b
		b.WaitingFor = slices.DeleteFunc(slices.Clone(b.WaitingFor), func(p string) bool { return p == storePath })
		if len(b.WaitingFor) == 0 {
			b.WaitingFor = nil
		}
		t.putBuild(k, &old, b)
	}
}

func (t *txn) setNarHolder(c *SetNarHolder) error {
	if c.Node == "" {
		return fmt.Errorf("nar holder: no node: %w", ErrBadCommand)
	}
	old := t.getNar(c.Hash)
	if old == nil {
		return fmt.Errorf("nar %s: %w", c.Hash, ErrNotFound)
	}
	n := *old
	if c.Present {
		n.Holders = mergeHolders(old.Holders, c.Node)
	} else {
		n.Holders = slices.DeleteFunc(slices.Clone(old.Holders), func(h string) bool { return h == c.Node })
	}
	t.putNar(c.Hash, old, &n)
	if c.Present {
		t.pathArrived(n.StorePath)
	}
	return nil
}

func (t *txn) putNode(c *PutNode) error {
	if c.Node.Name == "" {
		return fmt.Errorf("node without name: %w", ErrBadCommand)
	}
	t.putJSON(bkNodes, []byte(c.Node.Name), c.Node)
	t.ch.node()
	return nil
}

func (t *txn) removeNode(c *RemoveNode) error {
	if t.b[bkNodes].Get([]byte(c.Name)) == nil {
		return fmt.Errorf("node %q: %w", c.Name, ErrNotFound)
	}
	t.del(bkNodes, []byte(c.Name))
	t.ch.node()
	prefix := append([]byte(c.Name), 0)
	for _, hk := range t.prefixKeys(bkHolders, prefix) {
		hash := string(hk[len(prefix):])
		old := t.getNar(hash)
		if old == nil {
			panic(fmt.Sprintf("consensus: holder index names missing nar %s", hash))
		}
		n := *old
		n.Holders = slices.DeleteFunc(slices.Clone(old.Holders), func(h string) bool { return h == c.Name })
		t.putNar(hash, old, &n)
	}
	return nil
}

func (t *txn) ackEvents(c *AckEvents) error {
	for _, s := range c.Seqs {
		t.del(bkEvents, u64b(s))
	}
	return nil
}

func (t *txn) setSettings(c *SetSettings) error {
	t.putJSON(bkMeta, []byte("settings"), c.Settings)
	t.ch.setting()
	return nil
}

// finishOutputs records the outputs' nars, then finishes the build. An
// output whose nar differs from the one recorded for its path is kept as
// a Mismatch (with a build-mismatch event when the Mismatch is new), and
// the build finishes with the recorded nar: the mesh serves one nar per
// store path.
func (t *txn) finishOutputs(c *FinishOutputs, at time.Time) error {
	var from *narOrigin
	if b, _, err := t.getBuild(c.Finish.ID); err == nil {
		from = &narOrigin{derivation: b.Derivation, outputs: c.Finish.Outputs}
	}
	differ, created, err := t.recordNars(&c.NarInfos, at, from)
	if err != nil {
		return err
	}
	fin := &c.Finish
	if len(differ) > 0 {
		f := *fin
		f.Outputs = slices.Clone(fin.Outputs)
		for i := range f.Outputs {
			if differ[f.Outputs[i].Path] {
				f.Outputs[i].NarHash, f.Outputs[i].NarSize = "", 0
			}
		}
		fin = &f
	}
	if err := t.finishBuild(fin, at); err != nil {
		return err
	}
	if len(created) > 0 {
		k, _ := buildKey(fin.ID) // finishBuild found the build
		for range created {
			t.addEvent(EventBuildMismatch, k, at)
		}
	}
	return nil
}

func (t *txn) clearWaiting(c *ClearWaiting) error {
	b, k, err := t.getBuild(c.BuildID)
	if err != nil {
		return err
	}
	old := *b
	b.WaitingFor = nil
	t.putBuild(k, &old, b)
	return nil
}
