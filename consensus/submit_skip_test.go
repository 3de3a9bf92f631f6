package consensus

import (
	"reflect"
	"testing"
	"time"
)

func TestFSM_SubmitSkipIfActive(t *testing.T) {
	drv := storePath(1, "a.drv")
	submit := func(skip bool) *SubmitBuilds {
		return &SubmitBuilds{
			Builds:       []Build{{Derivation: drv, System: "x86_64-linux"}},
			SkipIfActive: []bool{skip},
		}
	}
	t.Run("a second submission while one is active makes no build", func(t *testing.T) {
		f := newTestFSM(t)
		first := f.mustApply(submit(true), t0).(*SubmitResult)
		second := f.mustApply(submit(true), t0.Add(time.Second)).(*SubmitResult)
		bs, err := f.BuildsByDerivation(drv)
		if err != nil {
			t.Fatal(err)
		}
		if len(bs) != 1 {
			t.Fatalf("%d builds of %s, want 1", len(bs), drv)
		}
		if !reflect.DeepEqual(second.IDs, first.IDs) {
			t.Fatalf("second submission names %v, want the active build %v", second.IDs, first.IDs)
		}
	})
	t.Run("a running build is active too", func(t *testing.T) {
		f := newTestFSM(t)
		id := f.mustApply(submit(false), t0).(*SubmitResult).IDs[0]
		f.mustApply(&AssignBuilds{Assignments: []Assignment{{id, "n1"}}}, t0)
		f.mustApply(&StartBuild{ID: id, Node: "n1"}, t0)
		f.mustApply(submit(true), t0.Add(time.Second))
		if bs, _ := f.BuildsByDerivation(drv); len(bs) != 1 {
			t.Fatalf("%d builds, want 1", len(bs))
		}
	})
	t.Run("after the active build finished a new one is made", func(t *testing.T) {
		f := newTestFSM(t)
		id := f.mustApply(submit(true), t0).(*SubmitResult).IDs[0]
		f.mustApply(&CancelBuilds{IDs: []string{id}}, t0)
		second := f.mustApply(submit(true), t0.Add(time.Second)).(*SubmitResult)
		if second.IDs[0] == id {
			t.Fatal("the canceled build was named again")
		}
		if bs, _ := f.BuildsByDerivation(drv); len(bs) != 2 {
			t.Fatalf("%d builds, want 2", len(bs))
		}
	})
	t.Run("without the flag a duplicate is made", func(t *testing.T) {
		f := newTestFSM(t)
		f.mustApply(submit(false), t0)
		f.mustApply(submit(false), t0.Add(time.Second))
		if bs, _ := f.BuildsByDerivation(drv); len(bs) != 2 {
			t.Fatalf("%d builds, want 2", len(bs))
		}
	})
	t.Run("two of one derivation in one entry make one build", func(t *testing.T) {
		f := newTestFSM(t)
		c := &SubmitBuilds{
			Builds:       []Build{{Derivation: drv, System: "s"}, {Derivation: drv, System: "s"}},
			SkipIfActive: []bool{true, true},
		}
		res := f.mustApply(c, t0).(*SubmitResult)
		if bs, _ := f.BuildsByDerivation(drv); len(bs) != 1 || res.IDs[0] != res.IDs[1] {
			t.Fatalf("%d builds, ids %v; want one build named twice", len(bs), res.IDs)
		}
	})
}

func TestEncodeCommand_SkipIfActive(t *testing.T) {
	cmd := &SubmitBuilds{
		Builds:       []Build{{Derivation: storePath(1, "a.drv"), System: "s"}, {Derivation: storePath(2, "b.drv"), System: "s"}},
		SkipIfActive: []bool{false, true},
	}
	data, err := EncodeCommand(cmd, t0)
	if err != nil {
		t.Fatal(err)
	}
	if data[9] != cmdPayloadV2 {
		t.Fatalf("payload version %d, want %d", data[9], cmdPayloadV2)
	}
	got, err := DecodeCommand(data)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, cmd) {
		t.Fatalf("decoded %+v\nwant %+v", got, cmd)
	}
	// An index outside the builds is refused.
	bad := append(append([]byte{}, data[:len(data)-1]...), 5)
	if _, err := DecodeCommand(bad); err == nil {
		t.Fatal("a skip index outside the builds decoded")
	}
}
