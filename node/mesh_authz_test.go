package node

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/drvmesh/drvmesh/consensus"
	"github.com/drvmesh/drvmesh/internal/testutil"
	"github.com/drvmesh/drvmesh/node/cluster"
)

// forged is the leader's answer to a command sent straight to its
// cluster port.
type forged struct {
	code int
	Err  string `json:"error"`
	Kind string `json:"kind"`
}

// forge sends cmd to the cluster port at addr as /rpc/apply does, over
// client (a member's mutual-TLS RPC client), claiming role.
func forge(t *testing.T, client *http.Client, addr, role string, cmd consensus.Command) forged {
	t.Helper()
	data, err := consensus.EncodeCommand(cmd, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/rpc/apply", bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if role != "" {
		req.Header.Set("Drvmesh-Role", role)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("forward %s: %v", cmd.Type(), err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	f := forged{code: resp.StatusCode}
	_ = json.Unmarshal(body, &f)
	if f.Err == "" {
		f.Err = string(body)
	}
	return f
}

// memberIdentity issues a certificate of the mesh CA for name and
// returns an RPC client presenting it and its fingerprint, as a holder
// of the CA key (a trusted member) could.
func memberIdentity(t *testing.T, via *Node, name string) (*http.Client, string) {
	t.Helper()
	certPEM, keyPEM, err := via.creds.CA.NewIdentity(name)
	if err != nil {
		t.Fatal(err)
	}
	_, client, err := cluster.TLSConfigs(via.creds.CA, certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(certPEM)
	sum := sha256.Sum256(b.Bytes)
	c := cluster.NewDialer(client).RPCClient()
	t.Cleanup(c.CloseIdleConnections)
	return c, hex.EncodeToString(sum[:])
}

// quiet waits until every node recorded its addresses, every node holds
// the same state and the leader has acknowledged every event, and
// returns that state's digest.
func quiet(t *testing.T, m *testMesh, nodes ...*Node) string {
	t.Helper()
	var digest, why string
	defer func() {
		if t.Failed() {
			t.Logf("not quiet: %s", why)
		}
	}()
	testutil.Eventually(t, 30*time.Second, "the same state everywhere", func() bool {
		if k := pendingEvents(m.waitLeader()); k != 0 {
			why = fmt.Sprintf("%d events wait for their hooks", k)
			return false
		}
		digest = ""
		for _, n := range nodes {
			rec, err := n.raft.State().Node(n.Name())
			if err != nil || rec.P2P != n.presence.p2pAddr() {
				why = fmt.Sprintf("%s's record is not current: %v", n.Name(), err)
				return false
			}
		}
		for _, n := range nodes {
			d, err := n.raft.State().Digest()
			if err != nil || digest != "" && d != digest {
				why = fmt.Sprintf("%s's state differs (applied %d): %v", n.Name(), n.raft.State().AppliedIndex(), err)
				return false
			}
			digest = d
		}
		return true
	})
	return digest
}

// TestMesh_ForgedCommands sends, with members' certificates, commands
// their issuers may not issue straight to the leader's cluster port:
// each is refused with 403 before it reaches raft, and no node's state
// changes or crashes.
func TestMesh_ForgedCommands(t *testing.T) {
	m := newTestMesh(t)
	n1 := m.bootstrap("n1", steady)
	m.join("n2", steady)
	m.join("n3", steady)
	testutil.Eventually(t, 30*time.Second, "3 voters", func() bool {
		return len(n1.api.Status().Voters) == 3
	})
	nodes := []*Node{n1, m.node("n2"), m.node("n3")}
	lead := m.waitLeader()
	var hostile *Node // a member that is not the leader
	for _, n := range nodes {
		if n != lead && n.Name() != "n3" {
			hostile = n
		}
	}
	// A build assigned to n3, and a volunteer member.
	id := submitVia(t, lead, 1)
	applyVia(t, lead, &consensus.AssignBuilds{Assignments: []consensus.Assignment{{BuildID: id, Node: "n3"}}})
	volClient, volFP := memberIdentity(t, n1, "vol")
	applyVia(t, lead, &consensus.PutNode{Node: consensus.Node{Name: "vol", Kind: consensus.KindVolunteer, Owner: "mallory", CertFingerprint: volFP}})
	ghostClient, _ := memberIdentity(t, n1, "ghost")
	twinClient, _ := memberIdentity(t, n1, "n3") // the name of a member, another key
	before := quiet(t, m, nodes...)
	_, commitBefore, _ := lead.raft.Stats()

	settings, err := lead.raft.State().Settings()
	if err != nil {
		t.Fatal(err)
	}
	settings.AdminTokenHash = cluster.TokenHash("dma1.mallory")
	outPath := "/nix/store/" + "0123456789abcdfghijklmnpqrsvwxyz" + "-forged"
	finishOut := &consensus.FinishOutputs{
		Finish: consensus.FinishBuild{ID: id, Node: "n3", Success: true, Outputs: []consensus.Output{{Name: "out", Path: outPath}}},
		NarInfos: consensus.PutNarInfos{Holder: "n3", NarInfos: []consensus.NarInfo{{
			StorePath: outPath, NarHash: "sha256:" + hex.EncodeToString(make([]byte, 32)), NarSize: 1, Holders: []string{"n3"},
		}}},
	}
	attacks := []struct {
		name   string
		client *http.Client
		role   string
		cmd    consensus.Command
	}{
		{"member replaces the admin token hash", hostile.creds.RPC, "", &consensus.SetSettings{Settings: settings}},
		{"member removes a voter", hostile.creds.RPC, "node", &consensus.RemoveNode{Name: "n3"}},
		{"member records a ghost", hostile.creds.RPC, "", &consensus.PutNode{Node: consensus.Node{Name: "ghost", Voter: true}}},
		{"member starts another node's build", hostile.creds.RPC, "", &consensus.StartBuild{ID: id, Node: "n3"}},
		{"member starts another node's build as itself", hostile.creds.RPC, "", &consensus.StartBuild{ID: id, Node: hostile.Name()}},
		{"member finishes another node's build", hostile.creds.RPC, "", finishOut},
		{"member claims the leader's role", hostile.creds.RPC, "leader", &consensus.SubmitBuilds{Builds: []consensus.Build{{Derivation: fakeDrv(2), System: "x86_64-linux"}}}},
		{"member claims the leader's role to assign", hostile.creds.RPC, "leader", &consensus.AssignBuilds{Assignments: []consensus.Assignment{{BuildID: id, Node: hostile.Name()}}}},
		{"volunteer claims admin", volClient, "admin", &consensus.SetSettings{Settings: settings}},
		{"volunteer relays a user", volClient, "user", &consensus.SubmitBuilds{Builds: []consensus.Build{{Derivation: fakeDrv(3), System: "x86_64-linux"}}}},
		{"certificate of no member", ghostClient, "admin", &consensus.RemoveNode{Name: "n3"}},
		{"another certificate for a member's name", twinClient, "admin", &consensus.RemoveNode{Name: "n2"}},
		{"unknown role", hostile.creds.RPC, "root", &consensus.RemoveNode{Name: "n3"}},
		{"member hands back another node's builds", hostile.creds.RPC, "", &consensus.RequeueNode{Node: "n3"}},
		{"member records nars for another holder", hostile.creds.RPC, "", &consensus.PutNarInfos{Holder: "n3", NarInfos: finishOut.NarInfos.NarInfos}},
		{"member drops another node's copy", hostile.creds.RPC, "", &consensus.SetNarHolder{Hash: "0123456789abcdfghijklmnpqrsvwxyz", Node: "n3"}},
		{"member rewrites its own fingerprint", hostile.creds.RPC, "", &consensus.PutNode{Node: selfWith(t, lead, hostile.Name(), func(r *consensus.Node) { r.CertFingerprint = volFP })}},
		{"member makes itself a volunteer's owner", hostile.creds.RPC, "", &consensus.PutNode{Node: selfWith(t, lead, hostile.Name(), func(r *consensus.Node) { r.Owner = "mallory" })}},
	}
	for _, a := range attacks {
		t.Run(a.name, func(t *testing.T) {
			got := forge(t, a.client, lead.clusterAdvertise(), a.role, a.cmd)
			if got.code != http.StatusForbidden || got.Kind != "unauthorized" && got.Kind != "bad_transition" {
				t.Errorf("%s = %d %s %q, want 403 unauthorized", a.cmd.Type(), got.code, got.Kind, got.Err)
			}
			t.Logf("refused: %d %s: %s", got.code, got.Kind, got.Err)
		})
	}
	unchanged(t, lead, commitBefore, before, nodes...)
	// The legitimate paths still work: n3 starts its own build.
	applyVia(t, m.node("n3"), &consensus.StartBuild{ID: id, Node: "n3"})
}

// TestMesh_LegacyRecord starts a node whose record has no certificate
// fingerprint, as a mesh's first node recorded itself before they were
// checked: the mesh still takes its raft streams and forwarded commands
// by name, and the node fills its fingerprint in.
func TestMesh_LegacyRecord(t *testing.T) {
	m := newTestMesh(t)
	n1 := m.bootstrap("n1", steady)
	m.join("n2", steady)
	m.join("n3", steady)
	testutil.Eventually(t, 30*time.Second, "3 voters", func() bool { return len(n1.api.Status().Voters) == 3 })
	rec, err := n1.raft.State().Node("n1")
	if err != nil || rec.CertFingerprint == "" {
		t.Fatalf("the first node's record has no fingerprint: %+v, %v", rec, err)
	}
	fp := rec.CertFingerprint
	legacy := *rec
	legacy.CertFingerprint = ""
	applyEnsure(t, m.waitLeader(), &consensus.PutNode{Node: legacy}, func() bool {
		got, err := m.waitLeader().raft.State().Node("n1")
		return err == nil && got.CertFingerprint == ""
	})
	m.kill("n1")
	n1 = m.restart("n1")
	testutil.Eventually(t, 30*time.Second, "n1 records its fingerprint again", func() bool {
		for _, name := range []string{"n2", "n3"} {
			got, err := m.node(name).raft.State().Node("n1")
			if err != nil || got.CertFingerprint != fp || got.Raft != n1.clusterAdvertise() {
				return false
			}
		}
		return true
	})
	// n1 writes through the leader as itself, as every node does.
	submitVia(t, n1, 7)
}

// unchanged checks that the leader committed nothing after commit, and
// that every node still holds the state of digest, with raft running.
func unchanged(t *testing.T, lead *Node, commit uint64, digest string, nodes ...*Node) {
	t.Helper()
	// The leader answers once it applied what it accepted: nothing was.
	if _, now, _ := lead.raft.Stats(); now != commit {
		t.Errorf("the leader's commit index moved from %d to %d", commit, now)
	}
	for _, n := range nodes {
		if d, err := n.raft.State().Digest(); err != nil || d != digest {
			t.Errorf("%s: state digest changed by refused commands (%v)", n.Name(), err)
		}
		if s := n.raft.RaftState(); s != "leader" && s != "follower" {
			t.Errorf("%s: raft is %s after the attacks", n.Name(), s)
		}
	}
}

// selfWith is the record of node name as lead holds it, changed.
func selfWith(t *testing.T, lead *Node, name string, change func(*consensus.Node)) consensus.Node {
	t.Helper()
	rec, err := lead.raft.State().Node(name)
	if err != nil {
		t.Fatal(err)
	}
	change(rec)
	return *rec
}
