package narcache

import (
	"bytes"
	"math/rand/v2"
	"net/http"
	"strconv"
	"testing"
)

func TestHandler_ServeFile(t *testing.T) {
	d := newTestDisk(t, DiskConfig{Compressions: []string{CompressionZstd}})
	idx := NewMemIndex()
	h, err := NewHandler(HandlerConfig{Disk: d, Index: idx, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	srv := newServer(t, h)
	random := make([]byte, 200<<10) // incompressible: the zstd file stays large
	_, _ = rand.NewChaCha8([32]byte{1}).Read(random)
	for _, tc := range []struct {
		name    string
		content []byte
	}{
		{"small file", []byte("small")},
		{"large file", random},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := ingestEntry(t, d, testPath, makeNar(t, tc.content))
			f := e.Files[0]
			if large := f.FileSize > smallFile; large != (tc.name == "large file") {
				t.Fatalf("file of %d bytes does not exercise the %s path", f.FileSize, tc.name)
			}
			resp, body := get(t, srv, "GET", "/"+f.URL())
			if resp.StatusCode != 200 || !sha(body).Equal(f.FileHash) || resp.ContentLength != f.FileSize ||
				resp.Header.Get("Content-Type") != "application/x-nix-nar" || resp.Header.Get("Accept-Ranges") != "bytes" {
				t.Fatalf("status %d, %d bytes, headers %v", resp.StatusCode, len(body), resp.Header)
			}
			head, hb := get(t, srv, "HEAD", "/"+f.URL())
			if head.StatusCode != 200 || len(hb) != 0 || head.ContentLength != f.FileSize {
				t.Fatalf("HEAD: status %d, %d bytes, length %d", head.StatusCode, len(hb), head.ContentLength)
			}
			req, _ := http.NewRequest("GET", srv.URL+"/"+f.URL(), nil)
			req.Header.Set("Range", "bytes=3-9")
			rr, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			part := readAll(t, rr.Body)
			if rr.StatusCode != http.StatusPartialContent || !bytes.Equal(part, body[3:10]) ||
				rr.Header.Get("Content-Range") != "bytes 3-9/"+strconv.FormatInt(f.FileSize, 10) {
				t.Fatalf("range: status %d, %q, %v", rr.StatusCode, part, rr.Header)
			}
		})
	}
}
