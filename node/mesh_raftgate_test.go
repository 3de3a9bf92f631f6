package node

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/drvmesh/drvmesh/internal/testutil"
	"github.com/drvmesh/drvmesh/node/cluster"
)

// dialLayer is a raft StreamLayer that only dials, over the cluster
// port with a member's credentials.
type dialLayer struct {
	d      *cluster.Dialer
	closed chan struct{}
}

func (l *dialLayer) Accept() (net.Conn, error) { <-l.closed; return nil, net.ErrClosed }
func (l *dialLayer) Close() error              { close(l.closed); return nil }
func (l *dialLayer) Addr() net.Addr            { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }
func (l *dialLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return l.d.DialRaft(ctx, string(addr))
}

// raftOpen reports whether a raft connection from d to addr stays open:
// a refused one is closed at once.
func raftOpen(t *testing.T, d *cluster.Dialer, addr string) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := d.DialRaft(ctx, addr)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	_, err = c.Read(make([]byte, 1))
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// TestMesh_RaftOnlyFromVoters opens raft streams with a nonvoter
// member's certificate: every node refuses them, so a forged
// AppendEntries at a higher term with an entry of an unknown command
// type reaches none, and the mesh keeps its leader, term and state.
func TestMesh_RaftOnlyFromVoters(t *testing.T) {
	m := newTestMesh(t)
	twoVoters := func(c *Config) { steady(c); c.MaxVoters = 2 }
	m.bootstrap("n1", twoVoters)
	m.join("n2", twoVoters)
	m.join("n3", twoVoters)
	var nonvoter string
	testutil.Eventually(t, 30*time.Second, "2 voters and a nonvoter", func() bool {
		st := m.waitLeader().api.Status()
		if len(st.Voters) != 2 || len(st.Nonvoters) != 1 {
			return false
		}
		nonvoter = st.Nonvoters[0]
		return true
	})
	nodes := []*Node{m.node("n1"), m.node("n2"), m.node("n3")}
	hostile := m.node(nonvoter)
	var voters []*Node
	for _, n := range nodes {
		if n != hostile {
			voters = append(voters, n)
		}
	}
	before := quiet(t, m, nodes...)
	lead := m.waitLeader()
	term, _, _ := lead.raft.Stats()

	t.Run("a voter's stream is admitted", func(t *testing.T) {
		if !raftOpen(t, voters[0].creds.Dialer, voters[1].clusterAdvertise()) {
			t.Errorf("%s refused a raft stream from the voter %s", voters[1].Name(), voters[0].Name())
		}
	})
	t.Run("a nonvoter's stream is refused", func(t *testing.T) {
		for _, n := range nodes {
			if n != hostile && raftOpen(t, hostile.creds.Dialer, n.clusterAdvertise()) {
				t.Errorf("%s admitted a raft stream from the nonvoter %s", n.Name(), hostile.Name())
			}
		}
	})
	t.Run("a forged AppendEntries reaches no node", func(t *testing.T) {
		layer := &dialLayer{d: hostile.creds.Dialer, closed: make(chan struct{})}
		trans := raft.NewNetworkTransport(layer, 1, 5*time.Second, io.Discard)
		defer trans.Close()
		for _, n := range voters {
			_, _, last := n.raft.Stats()
			req := raft.AppendEntriesRequest{
				RPCHeader:         raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte(hostile.Name()), Addr: []byte(hostile.clusterAdvertise())},
				Term:              term + 10,
				PrevLogEntry:      last,
				PrevLogTerm:       term,
				Entries:           []*raft.Log{{Index: last + 1, Term: term + 10, Type: raft.LogCommand, Data: []byte{0x7e, '{', '}'}}},
				LeaderCommitIndex: last + 1,
			}
			var resp raft.AppendEntriesResponse
			err := trans.AppendEntries(raft.ServerID(n.Name()), raft.ServerAddress(n.clusterAdvertise()), &req, &resp)
			if err == nil {
				t.Errorf("%s answered a forged AppendEntries: %+v", n.Name(), resp)
			}
		}
	})
	if l := m.waitLeader(); l != lead {
		t.Errorf("leadership moved from %s to %s", lead.Name(), l.Name())
	}
	for _, n := range nodes {
		if now, _, _ := n.raft.Stats(); now != term {
			t.Errorf("%s: term %d, want %d", n.Name(), now, term)
		}
		if d, err := n.raft.State().Digest(); err != nil || d != before {
			t.Errorf("%s: state digest changed (%v)", n.Name(), err)
		}
	}
}
