package narcache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"
)

// fetchThrough streams a nar file this node lacks from a holder to the
// client while writing a verified local copy. The copy goes on if the
// client leaves. If verification fails the copy is dropped, the holder
// reported, and the client's connection cut so it cannot take a complete
// response for a good one.
func (h *Handler) fetchThrough(w http.ResponseWriter, r *http.Request, want File) {
	if h.cfg.Fetcher == nil {
		h.notFound(w)
		return
	}
	holders := h.cfg.Index.Holders(want.Key())
	if len(holders) == 0 {
		h.notFound(w)
		return
	}
	if r.Method == http.MethodHead {
		hdr := w.Header()
		hdr["Content-Type"] = ctNar
		w.WriteHeader(http.StatusOK)
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), h.cfg.FetchTimeout)
	defer cancel()
	rc, n, holder, err := h.open(ctx, holders, want)
	if err != nil {
		h.log.Warn("fetch-through", "file", want.Key(), "err", err)
		h.notFound(w)
		return
	}
	defer rc.Close()
	nw, err := h.cfg.Disk.Create(want)
	if err != nil {
		h.log.Error("fetch-through: create local copy", "file", want.Key(), "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	hdr := w.Header()
	hdr["Content-Type"] = ctNar
	hdr["Cache-Control"] = ccImmutable
	hdr["Content-Length"] = []string{strconv.FormatInt(n, 10)}
	w.WriteHeader(http.StatusOK)

	clientOK := true
	buf := make([]byte, copyBufSize)
	var copyErr error
	for {
		m, rerr := rc.Read(buf)
		if m > 0 {
			if _, err := nw.Write(buf[:m]); err != nil {
				copyErr = err
				break
			}
			if clientOK {
				if _, err := w.Write(buf[:m]); err != nil {
					clientOK = false
				}
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			copyErr = rerr
			break
		}
	}
	if copyErr != nil {
		nw.Abort()
		h.suspects.mark(holder.ID, copyErr)
		if isBadData(copyErr) {
			h.badPeer(holder, copyErr)
		}
		h.log.Warn("fetch-through failed", "file", want.Key(), "peer", holder.ID, "err", copyErr)
		panic(http.ErrAbortHandler)
	}
	if _, err := nw.Commit(); err != nil {
		h.suspects.mark(holder.ID, err)
		if isBadData(err) {
			h.badPeer(holder, err)
		}
		h.log.Warn("fetch-through: nar failed verification", "file", want.Key(), "peer", holder.ID, "err", err)
		panic(http.ErrAbortHandler)
	}
}

// open tries the holders in order, those that failed lately last, until
// one sends the file.
func (h *Handler) open(ctx context.Context, holders []Holder, want File) (io.ReadCloser, int64, Holder, error) {
	var errs []error
	for _, hd := range h.suspects.order(holders) {
		rc, n, err := h.cfg.Fetcher.Fetch(ctx, hd, want)
		if err == nil {
			return rc, n, hd, nil
		}
		h.suspects.mark(hd.ID, err)
		if isBadData(err) {
			h.badPeer(hd, err)
		}
		errs = append(errs, err)
	}
	return nil, 0, Holder{}, fmt.Errorf("%w: %w", ErrNoHolder, errors.Join(errs...))
}

// replicate fetches, verifies and stores a file from the first holder
// that sends a good copy.
func (h *Handler) replicate(ctx context.Context, want File) (File, error) {
	if h.cfg.Fetcher == nil {
		return File{}, fmt.Errorf("replicate %s: %w", want.Key(), ErrNoHolder)
	}
	var errs []error
	for _, hd := range h.suspects.order(h.cfg.Index.Holders(want.Key())) {
		rc, _, err := h.cfg.Fetcher.Fetch(ctx, hd, want)
		if err != nil {
			h.suspects.mark(hd.ID, err)
			errs = append(errs, err)
			continue
		}
		f, err := h.cfg.Disk.Put(ctx, want, rc)
		rc.Close()
		if err == nil {
			return f, nil
		}
		h.suspects.mark(hd.ID, err)
		if isBadData(err) {
			h.badPeer(hd, err)
		}
		errs = append(errs, err)
	}
	return File{}, fmt.Errorf("%w: %w", ErrNoHolder, errors.Join(errs...))
}

func (h *Handler) badPeer(hd Holder, err error) {
	h.log.Warn("peer sent a bad nar", "peer", hd.ID, "err", err)
	if h.cfg.OnBadPeer != nil {
		h.cfg.OnBadPeer(hd.ID, err)
	}
}

// suspectFor is how long a holder whose transfer failed is asked last.
const suspectFor = 10 * time.Minute

// suspects remembers the holders whose last transfer failed, so that the
// next fetch asks them last. A fetch-through that fails mid-stream cannot
// move on to another holder (the client already has part of the
// response); the client's retry then goes to another one first. The zero
// value is ready to use; it holds at most one entry per holder the index
// names.
type suspects struct {
	mu    sync.Mutex
	until map[string]time.Time
}

// mark suspects the holder for suspectFor, unless err is only the
// caller's context ending.
func (s *suspects) mark(id string, err error) {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return
	}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.until == nil {
		s.until = map[string]time.Time{}
	}
	for k, t := range s.until {
		if !t.After(now) {
			delete(s.until, k)
		}
	}
	s.until[id] = now.Add(suspectFor)
}

// order returns the holders, those not suspected first, each group in
// the index's order.
func (s *suspects) order(hs []Holder) []Holder {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.until) == 0 {
		return hs
	}
	suspect := func(h Holder) bool {
		t, ok := s.until[h.ID]
		return ok && t.After(now)
	}
	out := slices.Clone(hs)
	slices.SortStableFunc(out, func(a, b Holder) int {
		sa, sb := suspect(a), suspect(b)
		switch {
		case sa == sb:
			return 0
		case sb:
			return -1
		default:
			return 1
		}
	})
	return out
}
