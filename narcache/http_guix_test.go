package narcache

import (
	"bytes"
	"net/http/httptest"
	"testing"

	"github.com/drvmesh/drvmesh/store"
)

func TestHandler_GuixSignature(t *testing.T) {
	sk, err := store.GenerateKey("mesh-1")
	if err != nil {
		t.Fatal(err)
	}
	gk, err := store.GenerateGuixKey()
	if err != nil {
		t.Fatal(err)
	}
	other, err := store.GenerateGuixKey()
	if err != nil {
		t.Fatal(err)
	}
	d := newTestDisk(t, DiskConfig{})
	idx := NewMemIndex()
	idx.Put(ingestEntry(t, d, testPath, makeNar(t, []byte("guix payload"))))
	h, err := NewHandler(HandlerConfig{Disk: d, Index: idx, Key: &sk, GuixKey: &gk, GuixHost: "mesh.example", Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, body := get(t, srv, "GET", "/0123456789abcdfghijklmnpqrsvwxyz.narinfo")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if err := store.VerifyGuixNarInfoKey(body, gk.Public()); err != nil {
		t.Errorf("Guix signature by the mesh key: %v\n%s", err, body)
	}
	if err := store.VerifyGuixNarInfoKey(body, other.Public()); err == nil {
		t.Error("Guix signature verified with another key")
	}
	ni, err := store.ParseNarInfo(body)
	if err != nil {
		t.Fatalf("Nix cannot parse the Guix-signed narinfo: %v\n%s", err, body)
	}
	if !sk.Public().VerifyNarInfo(ni, "/nix/store") {
		t.Errorf("Nix signature does not verify\n%s", body)
	}
	if !bytes.Contains(body, []byte("Signature: 1;mesh.example;")) {
		t.Errorf("no Signature field with the host\n%s", body)
	}
}
