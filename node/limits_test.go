package node

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/drvmesh/drvmesh/internal/testutil"
)

// metricValue reads one unlabelled sample from n's /metrics.
func metricValue(t *testing.T, n *Node, name string) (string, bool) {
	t.Helper()
	code, body := adminGet(t, n, "/metrics")
	if code != http.StatusOK {
		t.Fatalf("metrics: %d", code)
	}
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return v, true
		}
	}
	return "", false
}

func TestNode_Metrics(t *testing.T) {
	m := newTestMesh(t)
	n := m.bootstrap("n1", nil)
	for name, want := range map[string]string{
		"drvmesh_raft_leader":           "1",
		"drvmesh_builds_queued":         "0",
		"drvmesh_raft_rejected_entries": "0",
	} {
		if got, ok := metricValue(t, n, name); !ok || got != want {
			t.Errorf("%s = %q (present %v), want %s", name, got, ok, want)
		}
	}
}

// TestNode_HTTPLimits sends what a hostile client would to a real node's
// public port: each is refused or cut off, and the node still answers.
func TestNode_HTTPLimits(t *testing.T) {
	m := newTestMesh(t)
	n := m.bootstrap("n1", nil)
	t.Run("a large body to a small route", func(t *testing.T) {
		big := strings.Repeat("x", 2<<20)
		code, _ := httpDo(t, http.MethodPost, apiURL(n, "/api/v1/cancel"), "", strings.NewReader(big))
		if code != http.StatusRequestEntityTooLarge {
			t.Fatalf("2 MiB to /api/v1/cancel: %d, want 413", code)
		}
	})
	t.Run("connections over the per-address cap", func(t *testing.T) {
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for range httpMaxPerAddr {
			c, err := net.Dial("tcp", n.HTTPAddr())
			if err != nil {
				t.Fatal(err)
			}
			conns = append(conns, c)
		}
		c, err := net.Dial("tcp", n.HTTPAddr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, "GET /api/v1/status HTTP/1.1\r\nHost: x\r\n\r\n")
		if b, _ := io.ReadAll(c); len(b) > 0 {
			t.Fatalf("connection %d from one address was served: %.40q", httpMaxPerAddr+1, b)
		}
		for _, c := range conns {
			c.Close()
		}
		conns = nil
		waitStatusOK(t, n)
	})
}

// waitStatusOK waits until n answers its status again.
func waitStatusOK(t *testing.T, n *Node) {
	t.Helper()
	testutil.Eventually(t, 10*time.Second, "the node answers again once the connections closed", func() bool {
		resp, err := http.Get(apiURL(n, "/api/v1/status"))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}
