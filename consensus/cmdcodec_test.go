package consensus

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func TestEncodeCommand(t *testing.T) {
	submit := &SubmitBuilds{
		Builds: []Build{
			{Derivation: storePath(1, "a.drv"), System: "x86_64-linux"},
			{
				ID: NewBuildID(t0), Derivation: storePath(2, "b.drv"), System: "aarch64-linux", Priority: -3,
				Tags: map[string]string{"jobset": "trunk", "a": ""}, DeferUntil: t0.Add(time.Hour),
				Retries: 2, WaitingFor: []string{storePath(3, "in"), storePath(4, "in")},
				FailedNodes: []string{"n1"},
			},
		},
		Drvs: []Drv{{
			Path: storePath(2, "b.drv"), System: "aarch64-linux",
			InputDrvs: map[string][]string{storePath(5, "c.drv"): {"out", "dev"}, storePath(6, "d.drv"): {"out"}},
			InputSrcs: []string{storePath(7, "src")},
			Outputs:   map[string]string{"out": storePath(8, "b")},
			Features:  []string{"kvm"},
		}},
	}
	assign := &AssignBuilds{Assignments: []Assignment{{BuildID: NewBuildID(t0), Node: "n1"}, {BuildID: "not-an-id", Node: "n2"}}}
	for _, cmd := range []Command{submit, assign, &AssignBuilds{}, &SubmitBuilds{}, &StartBuild{ID: "x", Node: "n"}} {
		t.Run(reflect.TypeOf(cmd).Elem().Name()+" round trip", func(t *testing.T) {
			data, err := EncodeCommand(cmd, t0)
			if err != nil {
				t.Fatal(err)
			}
			if CommandType(data[0]) != cmd.Type() || binary.BigEndian.Uint64(data[1:9]) != uint64(t0.UnixNano()) {
				t.Fatalf("header %x", data[:9])
			}
			got, err := DecodeCommand(data)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, cmd) {
				t.Fatalf("decoded %+v\nwant %+v", got, cmd)
			}
		})
	}
	t.Run("SubmitBuilds and AssignBuilds are binary, others JSON", func(t *testing.T) {
		for cmd, want := range map[Command]byte{submit: cmdPayloadV1, assign: cmdPayloadV1, &CancelBuilds{}: '{'} {
			data, _ := EncodeCommand(cmd, t0)
			if data[9] != want {
				t.Errorf("%T payload starts with %#x", cmd, data[9])
			}
		}
	})
}

func TestDecodeCommand(t *testing.T) {
	cmd := &SubmitBuilds{Builds: []Build{{Derivation: storePath(1, "a.drv"), System: "s", Tags: map[string]string{"k": "v"}}}}
	good, err := EncodeCommand(cmd, t0)
	if err != nil {
		t.Fatal(err)
	}
	bad := map[string][]byte{
		"truncated":          good[:len(good)-3],
		"trailing bytes":     append(append([]byte{}, good...), 0),
		"unknown version":    append(append([]byte{}, good[:9]...), append([]byte{7}, good[10:]...)...),
		"empty payload":      good[:9],
		"huge count":         append(append([]byte{}, good[:10]...), 0xff, 0xff, 0xff, 0xff, 0x0f),
		"json of wrong type": append(append([]byte{}, good[:9]...), `{"builds":7}`...),
	}
	for name, data := range bad {
		t.Run(name+" is rejected", func(t *testing.T) {
			if _, err := DecodeCommand(data); err == nil {
				t.Fatal("decoded")
			}
		})
		t.Run(name+" is rejected by the replica", func(t *testing.T) {
			f := newTestFSM(t)
			before := f.dump()
			res := f.Apply(&raft.Log{Index: 1, Type: raft.LogCommand, Data: data})
			if err, _ := res.(error); !errors.Is(err, ErrBadCommand) {
				t.Fatalf("result %v", res)
			}
			if !bytes.Equal(f.dump(), before) || f.RejectedEntries() != 1 {
				t.Fatalf("state changed or entry not counted (%d)", f.RejectedEntries())
			}
		})
	}
	t.Run("JSON payloads of earlier versions still apply", func(t *testing.T) {
		f := newTestFSM(t)
		payload, _ := json.Marshal(cmd)
		data := append(append([]byte{}, good[:9]...), payload...)
		res := f.Apply(&raft.Log{Index: 1, Type: raft.LogCommand, Data: data})
		sr, ok := res.(*SubmitResult)
		if !ok || len(sr.IDs) != 1 {
			t.Fatalf("result %v", res)
		}
		b := f.build(sr.IDs[0])
		if b.Derivation != cmd.Builds[0].Derivation || b.Tags["k"] != "v" || !b.CreatedAt.Equal(t0) {
			t.Fatalf("build %+v", b)
		}
		payload, _ = json.Marshal(&AssignBuilds{Assignments: []Assignment{{BuildID: sr.IDs[0], Node: "n1"}}})
		data = append([]byte{byte(CmdAssignBuilds)}, append(good[1:9:9], payload...)...)
		if res := f.Apply(&raft.Log{Index: 2, Type: raft.LogCommand, Data: data}); !reflect.DeepEqual(res, &AssignResult{IDs: sr.IDs}) {
			t.Fatalf("assign result %v", res)
		}
	})
}

func TestDecodeEvent(t *testing.T) {
	k, _ := buildKey(NewBuildID(t0))
	t.Run("binary round trip", func(t *testing.T) {
		for _, typ := range eventCodes {
			ev, err := decodeEvent(7, encodeEvent(typ, k, t0))
			want := Event{Seq: 7, Type: typ, BuildID: hex.EncodeToString(k), Time: t0}
			if err != nil || ev != want {
				t.Fatalf("%+v, %v; want %+v", ev, err, want)
			}
		}
	})
	t.Run("JSON records of earlier versions", func(t *testing.T) {
		data, _ := json.Marshal(Event{Seq: 3, Type: EventBuildFailed, BuildID: "b", Time: t0})
		ev, err := decodeEvent(3, data)
		if err != nil || ev.Type != EventBuildFailed || ev.BuildID != "b" || !ev.Time.Equal(t0) {
			t.Fatalf("%+v, %v", ev, err)
		}
	})
	t.Run("bad records", func(t *testing.T) {
		good := encodeEvent(EventBuildStarted, k, t0)
		for name, data := range map[string][]byte{
			"empty": nil, "version": append([]byte{9}, good[1:]...), "short": good[:10],
			"trailing": append(append([]byte{}, good...), 1), "type": append([]byte{1, 200}, good[2:]...),
		} {
			if _, err := decodeEvent(1, data); !errors.Is(err, ErrBadSnapshot) && !errors.Is(err, errShortRecord) && !errors.Is(err, errTrailingBytes) {
				t.Errorf("%s: err = %v", name, err)
			}
		}
	})
}
