package consensus

import (
	"errors"
	"reflect"
	"testing"

	bolt "go.etcd.io/bbolt"
)

func TestHashPart(t *testing.T) {
	const h = "0123456789abcdfghijklmnpqrsvwxyz"
	for _, tc := range []struct {
		in, want string
	}{
		{"/nix/store/" + h + "-hello", h},
		{"/gnu/store/" + h + "-hello-2.12.drv", h},
		{h + "-hello", h},
		{"/nix/store/" + h + "-", ""},
		{h + "-", ""},
		{"/nix/store/" + h, ""},
		{"/nix/store/" + h[:31] + "-hello", ""},
		{"/nix/store/" + h + "-hello/", ""},
		{"", ""},
	} {
		got, err := HashPart(tc.in)
		if got != tc.want || (tc.want == "") != errors.Is(err, ErrBadCommand) {
			t.Errorf("HashPart(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestNode_OldRecords(t *testing.T) {
	// A node record and settings as written before kinds and owners
	// existed, stored raw as old replicas did, then carried through a
	// snapshot.
	f := newTestFSM(t)
	oldNode := `{"name":"n1","http":"h:1","raft":"r:1","cert_fingerprint":"fp","admitted_at":"2025-03-01T12:00:00Z","voter":true}`
	oldSettings := `{"strategy":"s","admin_token_hash":"ah","min_copies":2}`
	err := f.db.Update(func(tx *bolt.Tx) error {
		if err := tx.Bucket(buckets[bkNodes]).Put([]byte("n1"), []byte(oldNode)); err != nil {
			return err
		}
		return tx.Bucket(buckets[bkMeta]).Put([]byte("settings"), []byte(oldSettings))
	})
	if err != nil {
		t.Fatal(err)
	}
	g := newTestFSM(t)
	if err := g.Restore(snapshotOf(t, f.FSM).reader()); err != nil {
		t.Fatal(err)
	}
	for _, st := range []*testFSM{f, g} {
		n, err := st.Node("n1")
		if err != nil {
			t.Fatal(err)
		}
		want := Node{Name: "n1", HTTP: "h:1", Raft: "r:1", CertFingerprint: "fp", AdmittedAt: t0, Voter: true,
			Kind: KindTrusted, Owner: "n1"}
		if !reflect.DeepEqual(*n, want) || !n.Trusted() {
			t.Errorf("old node record = %+v, want %+v", *n, want)
		}
		s, err := st.Settings()
		if err != nil {
			t.Fatal(err)
		}
		if s.AdminTokenHash != "ah" || s.Agree != 0 || s.AgreeK() != DefaultAgree || s.VolunteerTokenHash != "" {
			t.Errorf("old settings = %+v", s)
		}
	}
	// A PutNode entry as older versions encoded it still decodes.
	entry := append([]byte{byte(CmdPutNode), 0, 0, 0, 0, 0, 0, 0, 0}, `{"node":`+oldNode+`}`...)
	cmd, err := DecodeCommand(entry)
	if err != nil {
		t.Fatal(err)
	}
	if n := cmd.(*PutNode).Node; n.Name != "n1" || n.CertFingerprint != "fp" || !n.Trusted() || n.OwnerName() != "n1" {
		t.Errorf("old PutNode entry = %+v", n)
	}
	// The new fields round-trip through PutNode and SetSettings.
	rec := Node{Name: "v1", Kind: KindVolunteer, Owner: "alice", NixKey: "v1:abc", Revoked: true, RevokedAt: t0, AdmittedAt: t0}
	f.mustApply(&PutNode{Node: rec}, t0)
	if n, err := f.Node("v1"); err != nil || !reflect.DeepEqual(*n, rec) || n.Trusted() {
		t.Errorf("volunteer record = %+v, %v", n, err)
	}
	st := Settings{Agree: 3, VolunteerTokenHash: "vh", VolunteerTokenExpires: t0}
	f.mustApply(&SetSettings{Settings: st}, t0)
	if s, err := f.Settings(); err != nil || s.AgreeK() != 3 || !reflect.DeepEqual(s, st) {
		t.Errorf("settings = %+v, %v", s, err)
	}
}
