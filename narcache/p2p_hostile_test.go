package narcache

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"

	"github.com/drvmesh/drvmesh/internal/testutil"
)

// hostileHolder is a bare libp2p host on loopback that answers every nar
// request with answer. It runs no member gater: it is the peer the mesh
// must defend against. A stalling answer waits on h.release, closed when
// the test ends.
type hostileHolder struct {
	h       host.Host
	release chan struct{}
}

func newHostileHolder(t *testing.T, answer func(hh *hostileHolder, s network.Stream)) *hostileHolder {
	t.Helper()
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableMetrics())
	if err != nil {
		t.Fatal(err)
	}
	hh := &hostileHolder{h: h, release: make(chan struct{})}
	t.Cleanup(func() {
		if err := h.Close(); err != nil {
			t.Error(err)
		}
	})
	// Runs before the host closes: frees any stalled handler.
	t.Cleanup(func() { close(hh.release) })
	h.SetStreamHandler(NarProtocol, func(s network.Stream) {
		defer s.Close()
		if _, err := bufio.NewReader(s).ReadSlice('\n'); err != nil {
			_ = s.Reset()
			return
		}
		answer(hh, s)
	})
	return hh
}

func (hh *hostileHolder) holder() Holder {
	var addrs []string
	for _, a := range hh.h.Addrs() {
		addrs = append(addrs, a.String())
	}
	return Holder{ID: hh.h.ID().String(), Addrs: addrs}
}

// stall blocks until the test ends.
func (hh *hostileHolder) stall() { <-hh.release }

// sendOK writes an ok header announcing n bytes, then body.
func sendOK(s network.Stream, n int64, body []byte) {
	var hdr [9]byte
	hdr[0] = statusOK
	binary.BigEndian.PutUint64(hdr[1:], uint64(n))
	_, _ = s.Write(append(hdr[:], body...))
}

// TestP2P_HostileHolder has a fetcher ask a hostile holder first and an
// honest one second. Each time the fetcher must refuse the hostile copy
// with an error naming the holder, keep nothing of it, take the file from
// the honest holder, and report only holders that sent bad bytes.
func TestP2P_HostileHolder(t *testing.T) {
	// Random content: the compressed file is as big as the NAR (2 MiB),
	// so a cut or a stall falls well inside the transfer.
	nar := makeBigNar(2 << 20)
	src := newTestDisk(t, DiskConfig{})
	want := ingestEntry(t, src, testPath, nar).Files[0]
	good, err := os.ReadFile(filepath.Join(src.Dir(), filepath.Base(want.URL())))
	if err != nil {
		t.Fatal(err)
	}
	flipped := bytes.Clone(good)
	flipped[len(flipped)/2] ^= 0x01
	otherDisk := newTestDisk(t, DiskConfig{})
	otherFile := ingestEntry(t, otherDisk, testPath, makeNar(t, []byte("some other nar"))).Files[0]
	other, err := os.ReadFile(filepath.Join(otherDisk.Dir(), filepath.Base(otherFile.URL())))
	if err != nil {
		t.Fatal(err)
	}
	// The index may not know a file's size; then only the hashes, and
	// MaxFileSize, stand between the fetcher and the holder.
	sizeUnknown := want
	sizeUnknown.FileSize = 0
	honest := newTestNode(t, src)
	size := int64(len(good))

	for _, tc := range []struct {
		name     string
		want     File
		answer   func(hh *hostileHolder, s network.Stream)
		errs     []error // the refusal wraps one of these
		reported bool    // the holder is reported as bad
	}{
		{name: "bytes differ from the file hash", want: want,
			answer:   func(_ *hostileHolder, s network.Stream) { sendOK(s, size, flipped) },
			errs:     []error{ErrHashMismatch, ErrCorrupt},
			reported: true},
		{name: "another well-formed nar", want: sizeUnknown,
			answer:   func(_ *hostileHolder, s network.Stream) { sendOK(s, int64(len(other)), other) },
			errs:     []error{ErrHashMismatch},
			reported: true},
		{name: "announces another size", want: want,
			answer:   func(_ *hostileHolder, s network.Stream) { sendOK(s, size+1, append(bytes.Clone(good), 0)) },
			errs:     []error{ErrHashMismatch},
			reported: true},
		{name: "announces more than MaxFileSize", want: sizeUnknown,
			answer: func(_ *hostileHolder, s network.Stream) { sendOK(s, 1<<62, good) },
			errs:   []error{ErrPeer}},
		{name: "truncated stream", want: want,
			answer: func(_ *hostileHolder, s network.Stream) { sendOK(s, size, good[:size/2]) },
			errs:   []error{ErrPeer}},
		{name: "stalls mid-transfer", want: want,
			answer: func(hh *hostileHolder, s network.Stream) { sendOK(s, size, good[:size/2]); hh.stall() },
			errs:   []error{ErrStalled}},
		{name: "stalls before answering", want: want,
			answer: func(hh *hostileHolder, _ network.Stream) { hh.stall() },
			errs:   []error{ErrStalled}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := newHostileHolder(t, tc.answer)
			f := newTestNodeWith(t, nil, func(c *P2PConfig) { c.Limits.IdleTimeout = 300 * time.Millisecond })
			f.mem.add(bad.h.ID(), honest.p2p.ID())
			honest.mem.add(f.p2p.ID())
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()

			start := time.Now()
			_, err := f.p2p.Replicate(ctx, bad.holder(), tc.want)
			if err == nil {
				t.Fatal("kept a hostile holder's copy")
			}
			t.Logf("refused: %v", err)
			if !slices.ContainsFunc(tc.errs, func(e error) bool { return errors.Is(err, e) }) {
				t.Fatalf("err = %v, want one of %v", err, tc.errs)
			}
			if !strings.Contains(err.Error(), bad.h.ID().String()) {
				t.Fatalf("the error does not name the holder: %v", err)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Fatalf("refusing took %v", d)
			}
			if names := dirNames(t, f.disk.Dir()); len(names) != 0 || f.disk.Has(want.Key()) {
				t.Fatalf("kept %v", names)
			}
			if got := slices.Contains(f.bad.list(), bad.h.ID().String()); got != tc.reported {
				t.Fatalf("reported as bad: %v, want %v", got, tc.reported)
			}

			got, err := f.p2p.ReplicateAny(ctx, []Holder{bad.holder(), honest.holder()}, tc.want)
			if err != nil {
				t.Fatal(err)
			}
			if got.Key() != want.Key() {
				t.Fatalf("stored %s, want %s", got.Key(), want.Key())
			}
			if names := dirNames(t, f.disk.Dir()); !slices.Equal(names, []string{filepath.Base(want.URL())}) {
				t.Fatalf("the store holds %v", names)
			}
			rc, _, err := f.disk.OpenNar(want.Key())
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(readAll(t, rc), nar) {
				t.Fatal("the stored nar differs")
			}
		})
	}

	t.Run("every holder hostile", func(t *testing.T) {
		truncate := func(_ *hostileHolder, s network.Stream) { sendOK(s, size, good[:10]) }
		a, b := newHostileHolder(t, truncate), newHostileHolder(t, truncate)
		f := newTestNode(t, nil)
		f.mem.add(a.h.ID(), b.h.ID())
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, err := f.p2p.ReplicateAny(ctx, []Holder{a.holder(), b.holder()}, want)
		if !errors.Is(err, ErrNoHolder) || !errors.Is(err, ErrPeer) {
			t.Fatalf("err = %v", err)
		}
		for _, id := range []string{a.h.ID().String(), b.h.ID().String()} {
			if !strings.Contains(err.Error(), id) {
				t.Fatalf("the error does not name %s: %v", id, err)
			}
		}
		if names := dirNames(t, f.disk.Dir()); len(names) != 0 {
			t.Fatalf("kept %v", names)
		}
	})
}

// TestHandler_FetchThroughHostileHolder has the binary cache fetch a nar
// it lacks while the index names a hostile holder first. A holder that
// fails before sending a byte is passed over at once. One that fails
// mid-stream cuts the client off (it already has part of the response),
// and the client's retry is served by the honest holder.
func TestHandler_FetchThroughHostileHolder(t *testing.T) {
	nar := makeBigNar(2 << 20)
	src := newTestDisk(t, DiskConfig{})
	e := ingestEntry(t, src, testPath, nar)
	want := e.Files[0]
	good, err := os.ReadFile(filepath.Join(src.Dir(), filepath.Base(want.URL())))
	if err != nil {
		t.Fatal(err)
	}
	size := int64(len(good))
	honest := newTestNode(t, src)
	fetch := func(t *testing.T, srv *httptest.Server) (int, []byte, error) {
		t.Helper()
		resp, err := srv.Client().Get(srv.URL + "/" + want.URL())
		if err != nil {
			return 0, nil, err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		return resp.StatusCode, body, err
	}
	for _, tc := range []struct {
		name       string
		answer     func(hh *hostileHolder, s network.Stream)
		firstFails bool // the first client request is cut off
	}{
		{name: "stalls before answering", answer: func(hh *hostileHolder, _ network.Stream) { hh.stall() }},
		// The URL names only the FileHash: the handler cannot check the
		// announced size before the bytes fail the hash.
		{name: "announces another size", firstFails: true,
			answer: func(_ *hostileHolder, s network.Stream) { sendOK(s, size-1, good[1:]) }},
		{name: "truncated stream", firstFails: true,
			answer: func(_ *hostileHolder, s network.Stream) { sendOK(s, size, good[:size/2]) }},
		{name: "stalls mid-transfer", firstFails: true,
			answer: func(hh *hostileHolder, s network.Stream) { sendOK(s, size, good[:size/2]); hh.stall() }},
		{name: "bytes differ from the file hash", firstFails: true,
			answer: func(_ *hostileHolder, s network.Stream) {
				bad := bytes.Clone(good)
				bad[size/2] ^= 1
				sendOK(s, size, bad)
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := newHostileHolder(t, tc.answer)
			f := newTestNodeWith(t, nil, func(c *P2PConfig) { c.Limits.IdleTimeout = 300 * time.Millisecond })
			f.mem.add(bad.h.ID(), honest.p2p.ID())
			honest.mem.add(f.p2p.ID())
			idx := NewMemIndex()
			idx.Put(e)
			idx.SetHolders(want.Key(), []Holder{bad.holder(), honest.holder()})
			h, err := NewHandler(HandlerConfig{Disk: f.disk, Index: idx, Fetcher: f.p2p, Logger: testLogger(t)})
			if err != nil {
				t.Fatal(err)
			}
			srv := newServer(t, h)

			status, body, err := fetch(t, srv)
			if tc.firstFails {
				if err == nil && status == 200 && bytes.Equal(body, good) {
					t.Fatal("the client got a whole response from a hostile holder")
				}
				if err == nil {
					t.Fatalf("a bad response ended cleanly: status %d, %d bytes", status, len(body))
				}
				if names := dirNames(t, f.disk.Dir()); len(names) != 0 {
					t.Fatalf("kept %v", names)
				}
				status, body, err = fetch(t, srv)
			}
			if err != nil || status != 200 || !bytes.Equal(body, good) {
				t.Fatalf("status %d, %d bytes: %v", status, len(body), err)
			}
			testutil.Eventually(t, 5*time.Second, "the fetched copy is kept", func() bool { return f.disk.Has(want.Key()) })
			if names := dirNames(t, f.disk.Dir()); !slices.Equal(names, []string{filepath.Base(want.URL())}) {
				t.Fatalf("the store holds %v", names)
			}
		})
	}
}
