package httplimit

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/drvmesh/drvmesh/internal/testutil"
)

// serve runs h behind a Listener on 127.0.0.1 and returns its address.
func serve(t *testing.T, h http.Handler, total, perAddr int, idle time.Duration, tm Timeouts) (string, *Listener) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := NewListener(ln, total, perAddr, idle)
	srv := Server(h, tm)
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String(), l
}

// closedWithin reports whether the server closes c within d.
func closedWithin(c net.Conn, d time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	return !(errors.As(err, &ne) && ne.Timeout())
}

func TestListener_Caps(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	addr, l := serve(t, ok, 0, 2, 0, DefaultTimeouts())
	var conns []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c)
	}
	// The third connection from the same address is closed at once.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if !closedWithin(c, 5*time.Second) {
		t.Fatal("third connection from one address was kept open")
	}
	if l.Refused() != 1 {
		t.Fatalf("refused %d, want 1", l.Refused())
	}
	// Closing one frees its slot.
	conns[0].Close()
	testutil.Eventually(t, 5*time.Second, "the closed connection's slot frees", func() bool { return l.Open() <= 1 })
	resp, err := http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatalf("after a slot freed: %v", err)
	}
	resp.Body.Close()
}

func TestListener_SlowClients(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, "ok")
	})
	t.Run("slow headers end at ReadHeader", func(t *testing.T) {
		addr, _ := serve(t, ok, 0, 0, time.Minute, Timeouts{ReadHeader: 200 * time.Millisecond, Idle: time.Minute})
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// A byte at a time, faster than the idle deadline: only the
		// header timeout can end it.
		for range 5 {
			if _, err := c.Write([]byte("G")); err != nil {
				return // closed: fine
			}
			time.Sleep(100 * time.Millisecond)
		}
		if !closedWithin(c, 5*time.Second) {
			t.Fatal("a client trickling its headers kept the connection")
		}
	})
	t.Run("stalled body ends at idle", func(t *testing.T) {
		h := Requests(ok, func(*http.Request) Rule { return Rule{MaxBody: 1000, Idle: 200 * time.Millisecond} })
		addr, _ := serve(t, h, 0, 0, time.Hour, Timeouts{ReadHeader: time.Minute, Idle: time.Hour})
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
		if !closedWithin(c, 5*time.Second) {
			t.Fatal("a client that stopped sending its body kept the connection")
		}
	})
	t.Run("a reader that stops reading is dropped", func(t *testing.T) {
		big := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			buf := make([]byte, 64<<10)
			for range 1 << 14 { // 1 GiB, more than any socket buffer
				if _, err := w.Write(buf); err != nil {
					return
				}
			}
		})
		addr, l := serve(t, big, 0, 0, 200*time.Millisecond, DefaultTimeouts())
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		// Read nothing: the server's writes block, then time out.
		testutil.Eventually(t, 10*time.Second, "the server drops a client that reads nothing", func() bool { return l.Open() == 0 })
	})
	t.Run("idle keep-alive ends", func(t *testing.T) {
		addr, _ := serve(t, ok, 0, 0, time.Minute, Timeouts{ReadHeader: time.Minute, Idle: 200 * time.Millisecond})
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("first request: %v %v", resp, err)
		}
		if !closedWithin(c, 5*time.Second) {
			t.Fatal("an idle keep-alive connection was kept")
		}
	})
	t.Run("a long answer with pauses is not cut", func(t *testing.T) {
		// Longer than the idle deadline in all, and with pauses longer
		// than it (a log followed while the build prints nothing).
		stream := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			for range 3 {
				io.WriteString(w, strings.Repeat("x", 1024))
				w.(http.Flusher).Flush()
				select {
				case <-r.Context().Done():
					return
				case <-time.After(500 * time.Millisecond):
				}
			}
		})
		addr, _ := serve(t, stream, 0, 0, 300*time.Millisecond, Timeouts{ReadHeader: time.Second, Idle: time.Second})
		resp, err := http.Get("http://" + addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		n, err := io.Copy(io.Discard, resp.Body)
		if err != nil || n != 3*1024 {
			t.Fatalf("got %d bytes, %v; want 3072 over 1.5 s with a 0.3 s idle deadline", n, err)
		}
	})
}

func TestInFlight(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 2)
	h := InFlight(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		<-release
	}), 2)
	addr, _ := serve(t, h, 0, 0, 0, DefaultTimeouts())
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if resp, err := http.Get("http://" + addr + "/"); err == nil {
				resp.Body.Close()
			}
		}()
	}
	<-started
	<-started
	resp, err := http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("third request: %d, Retry-After %q; want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	close(release)
	wg.Wait()
}

func TestRequests(t *testing.T) {
	h := Requests(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err != nil {
			var mb *http.MaxBytesError
			if errors.As(err, &mb) {
				http.Error(w, err.Error(), http.StatusRequestEntityTooLarge)
				return
			}
			http.Error(w, err.Error(), http.StatusRequestTimeout)
			return
		}
		io.WriteString(w, "ok")
	}), func(r *http.Request) Rule {
		switch r.URL.Path {
		case "/upload":
			return Rule{MaxBody: 100}
		case "/slow":
			return Rule{MaxBody: 100, ReadFor: 200 * time.Millisecond}
		}
		return Rule{MaxBody: 10, ReadFor: time.Minute}
	})
	addr, _ := serve(t, h, 0, 0, time.Minute, DefaultTimeouts())
	for _, tc := range []struct {
		path string
		size int
		want int
	}{{"/", 10, 200}, {"/", 11, 413}, {"/upload", 100, 200}, {"/upload", 101, 413}} {
		resp, err := http.Post("http://"+addr+tc.path, "application/octet-stream", strings.NewReader(strings.Repeat("x", tc.size)))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s with %d bytes: %d, want %d", tc.path, tc.size, resp.StatusCode, tc.want)
		}
	}
	// A chunked body has no Content-Length: the reader stops it.
	pr, pw := io.Pipe()
	go func() { pw.Write([]byte(strings.Repeat("y", 50))); pw.Close() }()
	resp, err := http.Post("http://"+addr+"/", "application/octet-stream", pr)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 413 {
		t.Errorf("chunked 50 bytes: %d, want 413", resp.StatusCode)
	}
	// A body that trickles in, faster than the idle deadline but slower
	// than the route's ReadFor, is cut at ReadFor.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n")
	start := time.Now()
	for range 20 {
		if _, err := c.Write([]byte("z")); err != nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !closedWithin(c, 5*time.Second) || time.Since(start) > 4*time.Second {
		t.Fatal("a trickled body outlived its route's ReadFor")
	}
}

func TestRate(t *testing.T) {
	now := time.Unix(1000, 0)
	r := NewRate(3, time.Second, 2)
	r.now = func() time.Time { return now }
	for i := range 3 {
		if ok, _ := r.Allow("a"); !ok {
			t.Fatalf("request %d of the burst refused", i)
		}
	}
	ok, report := r.Allow("a")
	if ok || !report {
		t.Fatalf("fourth: ok=%v report=%v, want refused and reported", ok, report)
	}
	if ok, report := r.Allow("a"); ok || report {
		t.Fatalf("fifth: ok=%v report=%v, want refused, not reported again", ok, report)
	}
	now = now.Add(time.Second)
	if ok, _ := r.Allow("a"); !ok {
		t.Fatal("a token did not come back after a second")
	}
	if ok, _ := r.Allow("b"); !ok {
		t.Fatal("second key refused")
	}
	// The table is full and no bucket has refilled: a third key waits.
	if ok, _ := r.Allow("c"); ok {
		t.Fatal("third key admitted into a full table")
	}
	now = now.Add(10 * time.Second)
	if ok, _ := r.Allow("c"); !ok {
		t.Fatal("third key refused after the others refilled")
	}
}
