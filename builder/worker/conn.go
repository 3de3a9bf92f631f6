package worker

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Protocol constants (Nix 2.8's worker-protocol.hh).
const (
	Magic1 = 0x6e697863 // the client's greeting
	Magic2 = 0x6478696f // the daemon's answer

	// ProtocolVersion is the version this client speaks: 1.34, Nix 2.8's.
	ProtocolVersion = 1<<8 | 34
	// minMinor is the oldest daemon minor version accepted (Nix 2.0
	// speaks 1.21; QueryPathInfo's found flag dates from 1.17).
	minMinor = 21
	// guixMinor: daemons announcing this minor version or above are Guix
	// daemons (0x163, 0x164), whose numbering forked from Nix's at 1.x
	// and means different fields; they are refused.
	guixMinor = 0x60
)

// Frames the daemon sends while it works.
const (
	stderrNext          = 0x6f6c6d67
	stderrRead          = 0x64617461
	stderrWrite         = 0x64617416
	stderrLast          = 0x616c7473
	stderrError         = 0x63787470
	stderrStartActivity = 0x53545254
	stderrStopActivity  = 0x53544f50
	stderrResult        = 0x52534c54
)

// Activity and result types worth showing in a build log.
const (
	lvlInfo          = 3
	resBuildLogLine  = 101
	resPostBuildLine = 107
	fieldInt         = 0
	fieldString      = 1
)

// DefaultIdleTimeout is how long an operation (other than a build's wait)
// may go without a byte moving either way before the connection is
// closed.
const DefaultIdleTimeout = 2 * time.Minute

// Sentinel errors.
var (
	// ErrProtocol: the daemon sent something this client cannot accept
	// (a bad magic number, an unknown frame, a length over its bound).
	ErrProtocol = errors.New("worker protocol violation")
	// ErrVersion: the daemon speaks a protocol version this client does
	// not (too old, another major version, or the Guix dialect).
	ErrVersion = errors.New("unsupported worker protocol version")
	// ErrBroken: an earlier failure closed the connection; dial another.
	ErrBroken = errors.New("daemon connection broken")
	// ErrIdle: no byte moved within the idle timeout.
	ErrIdle = errors.New("daemon connection idle too long")
)

// DaemonError is an error the daemon reported for an operation
// (STDERR_ERROR). The connection stays usable.
type DaemonError struct {
	Level   uint64   // Nix verbosity level of the error
	Message string   // the error text
	Traces  []string // trace hints, outermost first
	Status  uint64   // exit status (protocols before 1.26 only)
}

func (e *DaemonError) Error() string {
	msg := strings.TrimSpace(e.Message)
	if len(e.Traces) > 0 {
		msg += " (" + strings.Join(e.Traces, "; ") + ")"
	}
	return "daemon: " + msg
}

// Conn is one connection to a daemon. It serves one operation at a time:
// callers serialize (see the builder's pool).
type Conn struct {
	rwc  *idleRW
	r    reader
	w    writer
	once sync.Once

	daemonVersion uint64 // as announced
	version       uint64 // negotiated: min(ours, daemon's)
	nixVersion    string // the daemon's Nix version, 1.33+

	// IdleTimeout bounds the silence of every operation but a build's
	// wait for its result; 0 means DefaultIdleTimeout.
	IdleTimeout time.Duration

	broken atomic.Bool
}

// NewConn performs the handshake over rwc and returns the connection; it
// does not send SetOptions. On error it closes rwc. ctx bounds the
// handshake only.
func NewConn(ctx context.Context, rwc io.ReadWriteCloser) (*Conn, error) {
	c := &Conn{rwc: &idleRW{rwc: rwc}}
	c.rwc.onIdle = c.kill
	c.r = reader{r: bufio.NewReaderSize(c.rwc, ioChunk)}
	c.w = writer{w: bufio.NewWriterSize(c.rwc, ioChunk)}
	err := c.op(ctx, "handshake", DefaultIdleTimeout, c.handshake)
	if err != nil {
		c.kill()
		return nil, err
	}
	return c, nil
}

func (c *Conn) handshake() error {
	c.w.u64(Magic1)
	if err := c.w.flush(); err != nil {
		return err
	}
	magic, err := c.r.u64()
	if err != nil {
		return err
	}
	if magic != Magic2 {
		return fmt.Errorf("%w: magic %#x", ErrProtocol, magic)
	}
	if c.daemonVersion, err = c.r.u64(); err != nil {
		return err
	}
	major, minor := c.daemonVersion>>8, c.daemonVersion&0xff
	if major != 1 || minor < minMinor || minor >= guixMinor || c.daemonVersion > 0xffff {
		return fmt.Errorf("%w: daemon speaks %#x", ErrVersion, c.daemonVersion)
	}
	c.version = min(c.daemonVersion, ProtocolVersion)
	c.w.u64(ProtocolVersion)
	if c.minor() >= 14 {
		c.w.u64(0) // obsolete CPU affinity: none
	}
	if c.minor() >= 11 {
		c.w.u64(0) // obsolete reserveSpace
	}
	if err := c.w.flush(); err != nil {
		return err
	}
	if c.minor() >= 33 {
		if c.nixVersion, err = c.r.str(maxMsgLen); err != nil {
			return err
		}
	}
	return c.flushStderr(nil, nil)
}

func (c *Conn) minor() uint64 { return c.version & 0xff }

// Version is the negotiated protocol version, e.g. 0x122.
func (c *Conn) Version() uint64 { return c.version }

// DaemonVersion is the version the daemon announced.
func (c *Conn) DaemonVersion() uint64 { return c.daemonVersion }

// NixVersion is the daemon's own version string ("2.8.0"), empty before
// protocol 1.33.
func (c *Conn) NixVersion() string { return c.nixVersion }

// Broken reports whether the connection was closed by a failure, a
// timeout or a canceled operation.
func (c *Conn) Broken() bool { return c.broken.Load() }

// Close closes the connection; a daemon then stops the operation it was
// serving.
func (c *Conn) Close() error {
	var err error
	c.once.Do(func() {
		c.broken.Store(true)
		c.rwc.disarm()
		err = c.rwc.rwc.Close()
	})
	return err
}

func (c *Conn) kill() { _ = c.Close() }

// op runs one operation: an error other than a DaemonError, an idle
// timeout or the end of ctx closes the connection.
func (c *Conn) op(ctx context.Context, name string, idle time.Duration, fn func() error) error {
	if c.broken.Load() {
		return fmt.Errorf("%s: %w", name, ErrBroken)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	c.r.reset()
	c.rwc.arm(idle)
	stop := context.AfterFunc(ctx, c.kill)
	err := fn()
	c.rwc.disarm()
	if !stop() {
		c.kill()
		return fmt.Errorf("%s: %w", name, context.Cause(ctx))
	}
	if c.rwc.fired.Load() {
		c.kill()
		return fmt.Errorf("%s: %w", name, ErrIdle)
	}
	if err != nil {
		var de *DaemonError
		if !errors.As(err, &de) {
			c.kill()
		}
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

func (c *Conn) idle() time.Duration {
	if c.IdleTimeout > 0 {
		return c.IdleTimeout
	}
	return DefaultIdleTimeout
}

// flushStderr sends what was written, then reads the daemon's frames.
func (c *Conn) flushStderr(log io.Writer, src io.Reader) error {
	if err := c.w.flush(); err != nil {
		return err
	}
	return c.stderr(log, src)
}

// stderr reads the daemon's frames up to STDERR_LAST, writing log text to
// log (nil: discarded) and answering STDERR_READ from src. It returns a
// *DaemonError for STDERR_ERROR.
func (c *Conn) stderr(log io.Writer, src io.Reader) error {
	for {
		c.r.reset()
		msg, err := c.r.u64()
		if err != nil {
			return err
		}
		switch msg {
		case stderrLast:
			return nil
		case stderrError:
			return c.readError()
		case stderrNext:
			s, err := c.r.str(maxMsgLen)
			if err != nil {
				return err
			}
			logWrite(log, s)
		case stderrStartActivity:
			if err := c.readActivity(log); err != nil {
				return err
			}
		case stderrStopActivity:
			if _, err := c.r.u64(); err != nil {
				return err
			}
		case stderrResult:
			if err := c.readResult(log); err != nil {
				return err
			}
		case stderrRead:
			if err := c.answerRead(src); err != nil {
				return err
			}
		case stderrWrite:
			// Only the export operations, which this client never
			// sends, write data.
			return fmt.Errorf("%w: unexpected STDERR_WRITE", ErrProtocol)
		default:
			return fmt.Errorf("%w: unknown frame %#x", ErrProtocol, msg)
		}
	}
}

func logWrite(log io.Writer, s string) {
	if log == nil || s == "" {
		return
	}
	if !strings.HasSuffix(s, "\n") {
		s += "\n"
	}
	// A failing log writer must not break the protocol.
	_, _ = io.WriteString(log, s)
}

func (c *Conn) readError() error {
	if c.minor() < 26 {
		msg, err := c.r.str(maxMsgLen)
		if err != nil {
			return err
		}
		status, err := c.r.u64()
		if err != nil {
			return err
		}
		return &DaemonError{Message: msg, Status: status}
	}
	typ, err := c.r.str(maxMsgLen)
	if err != nil {
		return err
	}
	if typ != "Error" {
		return fmt.Errorf("%w: error type %q", ErrProtocol, typ)
	}
	e := &DaemonError{}
	if e.Level, err = c.r.u64(); err != nil {
		return err
	}
	if _, err = c.r.str(maxMsgLen); err != nil { // obsolete name
		return err
	}
	if e.Message, err = c.r.str(maxMsgLen); err != nil {
		return err
	}
	if err := c.noPos(); err != nil {
		return err
	}
	n, err := c.r.u64()
	if err != nil {
		return err
	}
	if n > maxTraces {
		return fmt.Errorf("%w: %d error traces", ErrProtocol, n)
	}
	for range n {
		if err := c.noPos(); err != nil {
			return err
		}
		hint, err := c.r.str(maxMsgLen)
		if err != nil {
			return err
		}
		e.Traces = append(e.Traces, hint)
	}
	return e
}

// noPos reads an error position, which the protocol always sends empty.
func (c *Conn) noPos() error {
	v, err := c.r.u64()
	if err != nil {
		return err
	}
	if v != 0 {
		return fmt.Errorf("%w: error position %d", ErrProtocol, v)
	}
	return nil
}

func (c *Conn) readActivity(log io.Writer) error {
	var hdr [3]uint64 // id, level, type
	for i := range hdr {
		v, err := c.r.u64()
		if err != nil {
			return err
		}
		hdr[i] = v
	}
	text, err := c.r.str(maxMsgLen)
	if err != nil {
		return err
	}
	if _, err := c.readFields(); err != nil {
		return err
	}
	if _, err := c.r.u64(); err != nil { // parent
		return err
	}
	if hdr[1] <= lvlInfo {
		logWrite(log, text)
	}
	return nil
}

func (c *Conn) readResult(log io.Writer) error {
	if _, err := c.r.u64(); err != nil { // activity
		return err
	}
	typ, err := c.r.u64()
	if err != nil {
		return err
	}
	fields, err := c.readFields()
	if err != nil {
		return err
	}
	if (typ == resBuildLogLine || typ == resPostBuildLine) && len(fields) > 0 {
		if s, ok := fields[0].(string); ok {
			logWrite(log, s)
		}
	}
	return nil
}

// readFields reads an activity's or result's fields: uint64 or string.
func (c *Conn) readFields() ([]any, error) {
	n, err := c.r.u64()
	if err != nil {
		return nil, err
	}
	if n > maxFields {
		return nil, fmt.Errorf("%w: %d fields", ErrProtocol, n)
	}
	fields := make([]any, 0, n)
	for range n {
		typ, err := c.r.u64()
		if err != nil {
			return nil, err
		}
		switch typ {
		case fieldInt:
			v, err := c.r.u64()
			if err != nil {
				return nil, err
			}
			fields = append(fields, v)
		case fieldString:
			s, err := c.r.str(maxMsgLen)
			if err != nil {
				return nil, err
			}
			fields = append(fields, s)
		default:
			return nil, fmt.Errorf("%w: field type %d", ErrProtocol, typ)
		}
	}
	return fields, nil
}

// answerRead sends up to the requested number of bytes of src.
func (c *Conn) answerRead(src io.Reader) error {
	n, err := c.r.u64()
	if err != nil {
		return err
	}
	if src == nil {
		return fmt.Errorf("%w: unexpected STDERR_READ", ErrProtocol)
	}
	buf := make([]byte, min(n, ioChunk))
	k, err := io.ReadFull(src, buf)
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return fmt.Errorf("read source: %w", err)
	}
	c.w.u64(uint64(k))
	_, _ = c.w.w.Write(buf[:k])
	if p := (8 - k%8) % 8; p > 0 {
		_, _ = c.w.w.Write(zeroPad[:p])
	}
	return c.w.flush()
}

// idleRW closes its connection when an armed idle timer runs out; every
// byte read or written restarts the timer.
type idleRW struct {
	rwc    io.ReadWriteCloser
	onIdle func()
	fired  atomic.Bool

	mu    sync.Mutex
	t     *time.Timer
	limit time.Duration // 0: disarmed
}

func (d *idleRW) arm(limit time.Duration) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.fired.Store(false)
	d.limit = limit
	if limit <= 0 {
		return
	}
	if d.t == nil {
		d.t = time.AfterFunc(limit, d.expire)
	} else {
		d.t.Reset(limit)
	}
}

func (d *idleRW) disarm() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.limit = 0
	if d.t != nil {
		d.t.Stop()
	}
}

func (d *idleRW) expire() {
	d.mu.Lock()
	armed := d.limit > 0
	d.mu.Unlock()
	if armed {
		d.fired.Store(true)
		d.onIdle()
	}
}

func (d *idleRW) touch() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.limit > 0 && d.t != nil {
		d.t.Reset(d.limit)
	}
}

func (d *idleRW) Read(p []byte) (int, error) {
	n, err := d.rwc.Read(p)
	if n > 0 {
		d.touch()
	}
	return n, err
}

func (d *idleRW) Write(p []byte) (int, error) {
	n, err := d.rwc.Write(p)
	if n > 0 {
		d.touch()
	}
	return n, err
}
