package worker

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"
)

// frames builds daemon output: uint64s, strings ([]byte or string).
func frames(items ...any) []byte {
	var b bytes.Buffer
	for _, it := range items {
		switch v := it.(type) {
		case int:
			_ = binary.Write(&b, binary.LittleEndian, uint64(v))
		case uint64:
			_ = binary.Write(&b, binary.LittleEndian, v)
		case string:
			_ = binary.Write(&b, binary.LittleEndian, uint64(len(v)))
			b.WriteString(v)
			b.Write(make([]byte, (8-len(v)%8)%8))
		case []byte:
			b.Write(v)
		}
	}
	return b.Bytes()
}

// greeting is a well-behaved 1.34 handshake.
var greeting = frames(Magic2, ProtocolVersion, "2.8.0", stderrLast)

// scripted is a fake daemon that answers with script whatever the client
// sends, then EOF.
type scripted struct {
	r      *bytes.Reader
	closed bool
}

func fakeScript(script []byte) *scripted { return &scripted{r: bytes.NewReader(script)} }

func (s *scripted) Read(p []byte) (int, error) {
	if s.closed {
		return 0, net.ErrClosed
	}
	return s.r.Read(p)
}

func (s *scripted) Write(p []byte) (int, error) {
	if s.closed {
		return 0, net.ErrClosed
	}
	return len(p), nil
}

func (s *scripted) Close() error { s.closed = true; return nil }

// fakeDaemon serves script over net.Pipe, discarding what the client
// sends, and then stays silent. The returned conn is the client's end.
func fakeDaemon(t *testing.T, script []byte) net.Conn {
	t.Helper()
	cli, srv := net.Pipe()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _, _ = io.Copy(io.Discard, srv) }()
	go func() { defer wg.Done(); _, _ = srv.Write(script) }()
	t.Cleanup(func() {
		_ = cli.Close()
		_ = srv.Close()
		wg.Wait()
	})
	return cli
}

func TestConn_Hostile(t *testing.T) {
	ctx := context.Background()
	handshakeCases := []struct {
		name   string
		script []byte
		want   error
	}{
		{"bad magic", frames(0x12345678), ErrProtocol},
		{"guix dialect", frames(Magic2, 0x163), ErrVersion},
		{"major 2", frames(Magic2, 0x222), ErrVersion},
		{"too old", frames(Magic2, 0x10a), ErrVersion},
		{"huge version string", frames(Magic2, ProtocolVersion, uint64(1)<<62), ErrProtocol},
		{"unknown frame", frames(Magic2, ProtocolVersion, "2.8.0", 0xdeadbeef), ErrProtocol},
		{"non-zero padding", frames(Magic2, ProtocolVersion, 1, []byte("2\x01\x00\x00\x00\x00\x00\x00")), ErrProtocol},
		{"truncated", frames(Magic2), io.ErrUnexpectedEOF},
		{"bad error type", frames(Magic2, ProtocolVersion, "2.8.0", stderrError, "Oops"), ErrProtocol},
		{"huge trace count", frames(Magic2, ProtocolVersion, "2.8.0", stderrError, "Error", 0, "Error", "m", 0, uint64(1)<<60), ErrProtocol},
		{"huge field count", frames(Magic2, ProtocolVersion, "2.8.0", stderrStartActivity, 1, 0, 105, "x", uint64(1)<<60), ErrProtocol},
	}
	for _, tc := range handshakeCases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewConn(ctx, fakeScript(tc.script))
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}

	t.Run("daemon error during handshake", func(t *testing.T) {
		_, err := NewConn(ctx, fakeScript(frames(Magic2, ProtocolVersion, "2.8.0",
			stderrError, "Error", 0, "Error", "no store", 0, 1, 0, "hint")))
		var de *DaemonError
		if !errors.As(err, &de) || de.Message != "no store" || len(de.Traces) != 1 {
			t.Fatalf("err = %v", err)
		}
	})

	opCases := []struct {
		name  string
		reply []byte
		op    func(c *Conn) error
	}{
		{"huge list", frames(stderrLast, uint64(1)<<62), func(c *Conn) error {
			_, err := c.QueryValidPaths(ctx, []string{"/nix/store/x"}, false)
			return err
		}},
		{"list longer than sent", frames(stderrLast, maxListLen), func(c *Conn) error {
			_, err := c.QueryValidPaths(ctx, nil, false)
			return err
		}},
		{"path too long", frames(stderrLast, 1, maxPathLen+1), func(c *Conn) error {
			_, err := c.QueryValidPaths(ctx, nil, false)
			return err
		}},
		{"bad boolean", frames(stderrLast, 7), func(c *Conn) error {
			_, err := c.IsValidPath(ctx, "/nix/store/x")
			return err
		}},
		{"bad nar hash", frames(stderrLast, 1, "", "zz"), func(c *Conn) error {
			_, _, err := c.QueryPathInfo(ctx, "/nix/store/x")
			return err
		}},
		{"huge built outputs", frames(stderrLast, 0, "", 1, 0, 0, 0, uint64(1)<<61), func(c *Conn) error {
			_, err := c.BuildDerivation(ctx, "/nix/store/x.drv", BasicDerivation{}, BuildNormal, nil)
			return err
		}},
		{"stderr write", frames(stderrWrite, "x"), func(c *Conn) error {
			_, err := c.IsValidPath(ctx, "/nix/store/x")
			return err
		}},
		{"nar bad magic", frames(stderrLast, "nix-archive-2"), func(c *Conn) error {
			return c.NarFromPath(ctx, "/nix/store/x", io.Discard)
		}},
		{"nar bad type", frames(stderrLast, "nix-archive-1", "(", "type", "fifo"), func(c *Conn) error {
			return c.NarFromPath(ctx, "/nix/store/x", io.Discard)
		}},
		{"nar huge file", frames(stderrLast, "nix-archive-1", "(", "type", "regular", "contents", uint64(1)<<63), func(c *Conn) error {
			return c.NarFromPath(ctx, "/nix/store/x", io.Discard)
		}},
		{"nar truncated contents", frames(stderrLast, "nix-archive-1", "(", "type", "regular", "contents", 1<<20, "abc"), func(c *Conn) error {
			return c.NarFromPath(ctx, "/nix/store/x", io.Discard)
		}},
		{"nar too deep", deepNar(narMaxDepth + 2), func(c *Conn) error {
			return c.NarFromPath(ctx, "/nix/store/x", io.Discard)
		}},
	}
	for _, tc := range opCases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := NewConn(ctx, fakeScript(append(append([]byte(nil), greeting...), tc.reply...)))
			if err != nil {
				t.Fatal(err)
			}
			err = tc.op(c)
			if !errors.Is(err, ErrProtocol) && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("err = %v, want a protocol error", err)
			}
			if !c.Broken() {
				t.Error("connection not broken after a protocol error")
			}
			if err := tc.op(c); !errors.Is(err, ErrBroken) {
				t.Errorf("next op: %v, want ErrBroken", err)
			}
		})
	}

	t.Run("silent daemon times out", func(t *testing.T) {
		c, err := NewConn(ctx, fakeDaemon(t, greeting))
		if err != nil {
			t.Fatal(err)
		}
		c.IdleTimeout = 50 * time.Millisecond
		start := time.Now()
		_, err = c.IsValidPath(ctx, "/nix/store/x")
		if !errors.Is(err, ErrIdle) || time.Since(start) > 5*time.Second {
			t.Fatalf("err = %v after %v, want ErrIdle", err, time.Since(start))
		}
	})

	t.Run("canceled context closes the connection", func(t *testing.T) {
		c, err := NewConn(ctx, fakeDaemon(t, greeting))
		if err != nil {
			t.Fatal(err)
		}
		cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		defer cancel()
		_, err = c.BuildDerivation(cctx, "/nix/store/x.drv", BasicDerivation{}, BuildNormal, nil)
		if !errors.Is(err, context.DeadlineExceeded) || !c.Broken() {
			t.Fatalf("err = %v, broken %v", err, c.Broken())
		}
	})
}

// deepNar is a NAR of nested directories, depth deep.
func deepNar(depth int) []byte {
	items := []any{stderrLast, "nix-archive-1", "(", "type", "directory"}
	for range depth {
		items = append(items, "entry", "(", "name", "d", "node", "(", "type", "directory")
	}
	return frames(items...)
}

// TestConn_RandomReplies feeds random and mutated replies to every
// operation: errors, never a panic, and no allocation sized by the peer.
func TestConn_RandomReplies(t *testing.T) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 2))
	valid := [][]byte{
		frames(stderrLast, 1),
		frames(stderrLast, 1, "/nix/store/a", "", "sha256:"),
		frames(stderrNext, "hello", stderrResult, 1, resBuildLogLine, 1, fieldString, "line", stderrLast, 0, ""),
		frames(stderrLast, "nix-archive-1", "(", "type", "regular", "contents", "abc", ")"),
	}
	ops := []func(c *Conn) error{
		func(c *Conn) error { _, err := c.IsValidPath(ctx, "/nix/store/x"); return err },
		func(c *Conn) error { _, err := c.QueryValidPaths(ctx, []string{"/nix/store/x"}, false); return err },
		func(c *Conn) error { _, _, err := c.QueryPathInfo(ctx, "/nix/store/x"); return err },
		func(c *Conn) error {
			_, err := c.BuildDerivation(ctx, "/nix/store/x.drv", BasicDerivation{}, BuildNormal, io.Discard)
			return err
		},
		func(c *Conn) error { return c.NarFromPath(ctx, "/nix/store/x", io.Discard) },
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := range 400 {
		reply := append([]byte(nil), valid[i%len(valid)]...)
		switch i % 3 {
		case 0: // flip bytes
			for range 1 + rng.IntN(4) {
				if len(reply) > 0 {
					reply[rng.IntN(len(reply))] ^= byte(1 + rng.IntN(255))
				}
			}
		case 1: // random tail
			tail := make([]byte, rng.IntN(64))
			for j := range tail {
				tail[j] = byte(rng.Uint32())
			}
			reply = append(reply[:rng.IntN(len(reply)+1)], tail...)
		case 2: // huge numbers at a random word
			if w := len(reply) / 8; w > 0 {
				binary.LittleEndian.PutUint64(reply[8*rng.IntN(w):], rng.Uint64())
			}
		}
		c, err := NewConn(ctx, fakeScript(append(append([]byte(nil), greeting...), reply...)))
		if err != nil {
			t.Fatal(err)
		}
		// Any outcome but a panic or a runaway allocation is fine: a
		// mutation may leave a valid reply.
		_ = ops[rng.IntN(len(ops))](c)
	}
	runtime.ReadMemStats(&after)
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 512<<20 {
		t.Errorf("allocated %d MiB over 400 replies", grew>>20)
	}
}
