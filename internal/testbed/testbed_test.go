package testbed_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/drvmesh/drvmesh/api"
	"github.com/drvmesh/drvmesh/internal/testbed"
	"github.com/drvmesh/drvmesh/internal/testutil"
	"github.com/drvmesh/drvmesh/store"
)

// TestTestbed_Faults runs three real hosts in their own network namespaces
// and checks the mesh through a partition of its leader, a kill -9 and
// restart, and a paused leader: a majority keeps electing and accepting
// writes, and every host converges once the fault is gone.
func TestTestbed_Faults(t *testing.T) {
	start := time.Now()
	tb := testbed.New(t, testbed.Config{Hosts: 3})
	t.Logf("testbed up in %v", time.Since(start).Round(time.Millisecond))
	all := tb.Hosts()
	waitConverged(t, tb, all, nil)
	token := tb.AdminToken()
	var written []string

	t.Run("nothing routes off the machine", func(t *testing.T) {
		ip := tb.IP("client")
		subnet := ip[:strings.LastIndexByte(ip, '.')] + ".0/24 dev eth0 "
		for _, m := range append([]string{"br", "client"}, all...) {
			out, err := tb.Script("exec", m, "ip", "-4", "route", "show", "table", "all")
			if err != nil {
				t.Fatal(err)
			}
			for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
				if line == "" || strings.Contains(line, "table local") || strings.HasPrefix(line, subnet) {
					continue
				}
				t.Errorf("%s has a route off the testbed's subnet: %s", m, line)
			}
		}
	})

	t.Run("one-way cut drops one direction only", func(t *testing.T) {
		in1, in2 := listenUDP(t, tb, "h1"), listenUDP(t, tb, "h2")
		tb.CutOneWay("h2", "h1")
		if got := sendUDP(t, tb, "h2", in1); got {
			t.Fatal("a packet from h2 reached h1 across the one-way cut")
		}
		if got := sendUDP(t, tb, "h1", in2); !got {
			t.Fatal("a packet from h1 did not reach h2: the one-way cut h2→h1 cut both ways")
		}
		tb.Heal()
		if got := sendUDP(t, tb, "h2", in1); !got {
			t.Fatal("a packet from h2 did not reach h1 after heal")
		}
	})

	t.Run("partition the leader", func(t *testing.T) {
		old := leaderOf(t, tb, "h1")
		rest := without(all, old)
		tb.Cut(old)

		// The cut really cuts: hosts on either side no longer reach each
		// other, while hosts on the same side still do.
		if _, err := getStatus(tb, rest[0], old); err == nil {
			t.Fatalf("%s reached %s across the cut", rest[0], old)
		}
		if _, err := getStatus(tb, old, rest[1]); err == nil {
			t.Fatalf("%s reached %s across the cut", old, rest[1])
		}
		if _, err := getStatus(tb, rest[0], rest[1]); err != nil {
			t.Fatalf("%s cannot reach %s on its own side: %v", rest[0], rest[1], err)
		}
		// Both directions: datagrams, which need no answer, are dropped each way.
		if sendUDP(t, tb, old, listenUDP(t, tb, rest[0])) {
			t.Fatalf("a packet from %s reached %s across the cut", old, rest[0])
		}
		if sendUDP(t, tb, rest[1], listenUDP(t, tb, old)) {
			t.Fatalf("a packet from %s reached %s across the cut", rest[1], old)
		}

		var leader string
		testutil.Eventually(t, 15*time.Second, "the majority elects a new leader", func() bool {
			leader = commonLeader(tb, rest)
			return leader != "" && leader != old
		})
		// Once the majority's gossip has declared the old leader dead,
		// an upload's copy goes straight to a member on its side.
		testutil.Eventually(t, 20*time.Second, rest[0]+" lists "+old+" as dead", func() bool {
			return nodeStatus(tb, rest[0], old, token) == api.NodeDead
		})
		written = append(written, writeOK(t, tb, rest[0], token))
		if _, err := write(tb, old, token); err == nil {
			t.Fatalf("the cut-off old leader %s acknowledged a write", old)
		}

		tb.Heal()
		waitConverged(t, tb, all, written)
	})

	t.Run("kill -9 and restart", func(t *testing.T) {
		leader := leaderOf(t, tb, "h1")
		victim := without(all, leader)[0]
		tb.Kill(victim)
		if _, err := tb.Status(victim); err == nil {
			t.Fatalf("%s answers after kill -9", victim)
		}
		written = append(written, writeOK(t, tb, leader, token))
		tb.Start(victim)
		waitConverged(t, tb, all, written)
	})

	t.Run("pause and resume the leader", func(t *testing.T) {
		old := leaderOf(t, tb, "h1")
		rest := without(all, old)
		tb.Pause(old)
		testutil.Eventually(t, 15*time.Second, "the others elect a leader while the old one is paused", func() bool {
			l := commonLeader(tb, rest)
			return l != "" && l != old
		})
		written = append(written, writeOK(t, tb, rest[1], token))
		tb.Resume(old)
		waitConverged(t, tb, all, written)
	})
	t.Logf("whole test took %v", time.Since(start).Round(time.Millisecond))
}

// waitConverged waits until every host of hosts answers, counts them all
// as voters, names the same leader in the same term and holds every path
// in paths.
func waitConverged(t *testing.T, tb *testbed.Testbed, hosts, paths []string) {
	t.Helper()
	var last string
	ok := func() bool {
		var first testbed.Status
		for i, h := range hosts {
			st, err := tb.Status(h)
			if err != nil {
				last = err.Error()
				return false
			}
			if len(st.Voters) != len(hosts) || st.Leader == "" {
				last = fmt.Sprintf("%s: voters %v, leader %q", h, st.Voters, st.Leader)
				return false
			}
			if i == 0 {
				first = st
			} else if st.Leader != first.Leader || st.Term != first.Term {
				last = fmt.Sprintf("%s: leader %s term %d, %s: leader %s term %d", hosts[0], first.Leader, first.Term, h, st.Leader, st.Term)
				return false
			}
			if m := missing(tb, h, paths); len(m) > 0 {
				last = fmt.Sprintf("%s lacks %v", h, m)
				return false
			}
		}
		return true
	}
	for deadline := time.Now().Add(30 * time.Second); !ok(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("hosts did not converge in 30s: %s", last)
		}
	}
}

// leaderOf is the leader host h reports.
func leaderOf(t *testing.T, tb *testbed.Testbed, h string) string {
	t.Helper()
	st, err := tb.Status(h)
	if err != nil || st.Leader == "" {
		t.Fatalf("no leader from %s: %+v, %v", h, st, err)
	}
	return st.Leader
}

// commonLeader is the leader every host of hosts names, or "".
func commonLeader(tb *testbed.Testbed, hosts []string) string {
	leader := ""
	for _, h := range hosts {
		st, err := tb.Status(h)
		if err != nil || st.Leader == "" || (leader != "" && st.Leader != leader) {
			return ""
		}
		leader = st.Leader
	}
	return leader
}

// getStatus asks host to from inside host from's namespace, with a short
// timeout.
func getStatus(tb *testbed.Testbed, from, to string) (testbed.Status, error) {
	c := tb.HTTPFrom(from)
	c.Timeout = time.Second
	var st testbed.Status
	err := tb.GetJSON(c, to, "/api/v1/status", &st)
	return st, err
}

// missing is which of paths host h says the mesh lacks (all of them when
// h does not answer).
func missing(tb *testbed.Testbed, h string, paths []string) []string {
	if len(paths) == 0 {
		return nil
	}
	body, _ := json.Marshal(map[string][]string{"paths": paths})
	req, err := http.NewRequest(http.MethodPost, tb.URL(h)+"/api/v1/paths/missing", bytes.NewReader(body))
	if err != nil {
		return paths
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+tb.AdminToken()) // the query needs the admin token
	resp, err := tb.HTTP().Do(req)
	if err != nil {
		return paths
	}
	defer resp.Body.Close()
	var out struct {
		Missing []string `json:"missing"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&out) != nil {
		return paths
	}
	return out.Missing
}

// writeOK uploads a new source path through host h and returns its path.
func writeOK(t *testing.T, tb *testbed.Testbed, h, token string) string {
	t.Helper()
	p, err := write(tb, h, token)
	if err != nil {
		t.Fatalf("write through %s: %v", h, err)
	}
	return p
}

// write uploads a new content-addressed source path through host h, an
// admin write that goes through raft, and returns its store path.
func write(tb *testbed.Testbed, h, token string) (string, error) {
	f := filepath.Join(os.TempDir(), "drvmesh-testbed-src-"+strconv.FormatInt(time.Now().UnixNano(), 36))
	if err := os.WriteFile(f, []byte("written through "+h+" at "+time.Now().String()), 0o644); err != nil {
		return "", err
	}
	defer os.Remove(f)
	hash, size, err := store.NarHashPath(f)
	if err != nil {
		return "", err
	}
	var nar bytes.Buffer
	if err := store.DumpPath(&nar, f); err != nil {
		return "", err
	}
	path := store.MakeSourcePath("/nix/store", "testbed-write", hash, nil, false)
	q := url.Values{"path": {path}, "nar_hash": {hash.String()}, "nar_size": {strconv.FormatInt(size, 10)}}
	req, err := http.NewRequest(http.MethodPut, tb.URL(h)+"/api/v1/nars?"+q.Encode(), &nar)
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	// An upload is answered once its nar has its copies; with a member
	// cut off but not yet declared dead, the first copy request may wait
	// out its bound (20 s) before another member is asked.
	resp, err := tb.HTTPWithin(45 * time.Second).Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error string `json:"error"`
		}
		json.NewDecoder(resp.Body).Decode(&e)
		return "", fmt.Errorf("put %s: status %d: %s", path, resp.StatusCode, e.Error)
	}
	return path, nil
}

// listenUDP opens a UDP socket on member m's address, inside its
// namespace, and closes it when the test ends.
func listenUDP(t *testing.T, tb *testbed.Testbed, m string) *net.UDPConn {
	t.Helper()
	var conn *net.UDPConn
	err := tb.In(m, func() error {
		var err error
		conn, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(tb.IP(m))})
		return err
	})
	if err != nil {
		t.Fatalf("listen on %s: %v", m, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// sendUDP sends a few datagrams from member m's namespace to to and
// reports whether one arrived within half a second.
func sendUDP(t *testing.T, tb *testbed.Testbed, m string, to *net.UDPConn) bool {
	t.Helper()
	var out *net.UDPConn
	err := tb.In(m, func() error {
		var err error
		out, err = net.DialUDP("udp4", nil, to.LocalAddr().(*net.UDPAddr))
		return err
	})
	if err != nil {
		t.Fatalf("dial from %s: %v", m, err)
	}
	defer out.Close()
	msg := []byte("from " + m + " " + strconv.FormatInt(time.Now().UnixNano(), 10))
	for range 3 {
		if _, err := out.Write(msg); err != nil {
			t.Fatalf("send from %s: %v", m, err)
		}
	}
	buf := make([]byte, 128)
	to.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	for {
		n, err := to.Read(buf)
		if err != nil {
			return false
		}
		if bytes.Equal(buf[:n], msg) {
			return true
		}
	}
}

func without(hosts []string, h string) []string {
	return slices.DeleteFunc(slices.Clone(hosts), func(x string) bool { return x == h })
}

// nodeStatus is the liveness host h lists for member m, or "" when h
// does not answer.
func nodeStatus(tb *testbed.Testbed, h, m, token string) api.NodeStatus {
	req, err := http.NewRequest(http.MethodGet, tb.URL(h)+"/api/v1/nodes", nil)
	if err != nil {
		return ""
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := tb.HTTP().Do(req)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	var nodes []api.Node
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&nodes) != nil {
		return ""
	}
	for _, n := range nodes {
		if n.Name == m {
			return n.Status
		}
	}
	return ""
}
