package consensus

import (
	"go/ast"
	"go/constant"
	"go/parser"
	"go/token"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// sampleCommands holds one command of every registered type with every
// field set, for the round trip below.
func sampleCommands() []Command {
	out := []Output{{Name: "out", Path: storePath(8, "b"), NarHash: "sha256:abc", NarSize: 7}}
	nar := NarInfo{
		StorePath: storePath(8, "b"), NarHash: "sha256:abc", NarSize: 7, References: []string{"x"},
		Deriver: "d.drv", System: "s", CA: "ca", Sigs: []string{"k:sig"},
		Files: []NarFile{{Compression: "xz", FileHash: "sha256:f", FileSize: 3}}, Holders: []string{"n1"},
	}
	finish := FinishBuild{ID: NewBuildID(t0), Node: "n1", Success: true, Outputs: out, Error: "e", MissingInputs: []string{storePath(9, "in")}}
	return []Command{
		&SubmitBuilds{
			Builds: []Build{{ID: NewBuildID(t0), Derivation: storePath(2, "b.drv"), System: "s", Priority: 3,
				Tags: map[string]string{"k": "v"}, Retries: 1, WaitingFor: []string{storePath(3, "in")}}},
			Drvs: []Drv{{Path: storePath(2, "b.drv"), System: "s", Outputs: map[string]string{"out": storePath(8, "b")}}},
		},
		&AssignBuilds{Assignments: []Assignment{{BuildID: NewBuildID(t0), Node: "n1"}}},
		&StartBuild{ID: NewBuildID(t0), Node: "n1"},
		&finish,
		&CancelBuilds{IDs: []string{NewBuildID(t0)}},
		&RequeueNode{Node: "n1"},
		&PutNarInfos{NarInfos: []NarInfo{nar}, Holder: "n1"},
		&SetNarHolder{Hash: hashOf(8), Node: "n1", Present: true},
		&PutNode{Node: Node{Name: "n1", HTTP: "h", Raft: "r", P2P: "p", PeerID: "id", CertFingerprint: "fp", AdmittedAt: t0, Voter: true,
			Kind: KindVolunteer, Owner: "o", NixKey: "n1:k", Revoked: true, RevokedAt: t0}},
		&RemoveNode{Name: "n1"},
		&AckEvents{Seqs: []uint64{1, 5}},
		&SetSettings{Settings: Settings{Strategy: "s", MinCopies: 2, Retries: 1, JoinTokenExpires: t0, Extra: map[string]string{"a": "b"},
			Agree: 3, VolunteerTokenHash: "vh", VolunteerTokenExpires: t0}},
		&ClearWaiting{BuildID: NewBuildID(t0)},
		&FinishOutputs{NarInfos: PutNarInfos{NarInfos: []NarInfo{nar}, Holder: "n1"}, Finish: finish},
		&FailQueued{IDs: []string{NewBuildID(t0)}, Error: "input failed"},
	}
}

// commandConstants parses command.go for the constants of type
// CommandType named Cmd*, so that a constant without a registry row
// fails the test below however it was added.
func commandConstants(t *testing.T) map[string]CommandType {
	t.Helper()
	file, err := parser.ParseFile(token.NewFileSet(), "command.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	consts := map[string]CommandType{}
	for _, decl := range file.Decls {
		gd, ok := decl.(*ast.GenDecl)
		if !ok || gd.Tok != token.CONST {
			continue
		}
		for _, spec := range gd.Specs {
			vs := spec.(*ast.ValueSpec)
			if id, ok := vs.Type.(*ast.Ident); !ok || id.Name != "CommandType" {
				continue
			}
			for i, name := range vs.Names {
				lit, ok := vs.Values[i].(*ast.BasicLit)
				if !ok || !strings.HasPrefix(name.Name, "Cmd") {
					continue
				}
				v, ok := constant.Uint64Val(constant.MakeFromLiteral(lit.Value, lit.Kind, 0))
				if !ok {
					t.Fatalf("constant %s = %s", name.Name, lit.Value)
				}
				consts[name.Name] = CommandType(v)
			}
		}
	}
	return consts
}

func TestRegistry(t *testing.T) {
	t.Run("every command constant has a row", func(t *testing.T) {
		consts := commandConstants(t)
		if len(consts) < 15 {
			t.Fatalf("parsed only %d constants: %v", len(consts), consts)
		}
		seen := map[CommandType]string{}
		for name, typ := range consts {
			if other, dup := seen[typ]; dup {
				t.Errorf("%s and %s share number %d", name, other, typ)
			}
			seen[typ] = name
			if typ&SkipIfUnknown != 0 && lookup(typ) == nil {
				continue // a skippable type may be known only to newer versions
			}
			if lookup(typ) == nil {
				t.Errorf("%s (%d) has no registry row", name, typ)
			}
		}
		for _, typ := range CommandTypes() {
			if _, ok := seen[typ]; !ok {
				t.Errorf("row %d (%s) has no constant", typ, typ)
			}
		}
	})
	t.Run("every row is complete and names its own type", func(t *testing.T) {
		names := map[string]bool{}
		for _, typ := range CommandTypes() {
			d := lookup(typ)
			if d.apply == nil || d.name == "" || d.issuers == 0 || d.authorize == nil {
				t.Errorf("row %d: apply, name, issuers or authorize missing", typ)
			}
			if names[d.name] {
				t.Errorf("row %d: name %q twice", typ, d.name)
			}
			names[d.name] = true
			cmd := d.new()
			if cmd.Type() != typ || reflect.TypeOf(cmd).Kind() != reflect.Pointer {
				t.Errorf("row %d: new() gives %T of type %d", typ, cmd, cmd.Type())
			}
			if typ.String() != d.name {
				t.Errorf("row %d: String() = %q", typ, typ.String())
			}
		}
	})
	t.Run("every registered type round-trips", func(t *testing.T) {
		samples := sampleCommands()
		var covered []CommandType
		for _, cmd := range samples {
			covered = append(covered, cmd.Type())
			data, err := EncodeCommand(cmd, t0)
			if err != nil {
				t.Fatalf("%T: %v", cmd, err)
			}
			got, err := DecodeCommand(data)
			if err != nil {
				t.Fatalf("%T: %v", cmd, err)
			}
			if !reflect.DeepEqual(got, cmd) {
				t.Errorf("%T: decoded %+v\nwant %+v", cmd, got, cmd)
			}
		}
		for _, typ := range CommandTypes() {
			if !slices.Contains(covered, typ) {
				t.Errorf("no sample command of type %s (%d)", typ, typ)
			}
		}
	})
	t.Run("Idempotent", func(t *testing.T) {
		want := []CommandType{CmdAssignBuilds, CmdRequeueNode, CmdPutNarInfos, CmdSetNarHolder, CmdPutNode,
			CmdAckEvents, CmdSetSettings, CmdClearWaiting, CmdFailQueued}
		for _, cmd := range sampleCommands() {
			if got := Idempotent(cmd); got != slices.Contains(want, cmd.Type()) {
				t.Errorf("Idempotent(%T) = %v", cmd, got)
			}
		}
	})
	t.Run("ResultIDs", func(t *testing.T) {
		ids := []string{"a", "b"}
		for _, res := range []any{&SubmitResult{IDs: ids}, &AssignResult{IDs: ids}, &RequeueResult{IDs: ids}} {
			if got := ResultIDs(res); !slices.Equal(got, ids) {
				t.Errorf("ResultIDs(%T) = %v", res, got)
			}
		}
		for _, res := range []any{nil, (*SubmitResult)(nil), "x", ErrNotFound} {
			if got := ResultIDs(res); got != nil {
				t.Errorf("ResultIDs(%#v) = %v", res, got)
			}
		}
	})
	t.Run("Issuers", func(t *testing.T) {
		if got := Issuers(CmdAssignBuilds); got != IssuerLeader {
			t.Errorf("assign: %s", got)
		}
		if got := Issuers(CmdFinishOutputs); !got.Has(IssuerAssignedNode) || got.Has(IssuerUser) {
			t.Errorf("finish outputs: %s", got)
		}
		if got := Issuers(CmdSetSettings).String(); got != "leader|admin" {
			t.Errorf("settings: %s", got)
		}
		if got := Issuers(99); got != 0 || got.String() != "none" {
			t.Errorf("unknown type: %s", got)
		}
	})
}
