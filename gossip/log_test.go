package gossip

import (
	"context"
	"log/slog"
	"sync"
	"testing"
)

// recordHandler keeps the records it handles.
type recordHandler struct {
	mu      sync.Mutex
	records []slog.Record
}

func (h *recordHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *recordHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.records = append(h.records, r)
	return nil
}
func (h *recordHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *recordHandler) WithGroup(string) slog.Handler      { return h }

func TestSlogWriter_Write(t *testing.T) {
	for _, tc := range []struct {
		line, msg string
		level     slog.Level
	}{
		{"[DEBUG] memberlist: Stream connection from=1.2.3.4:5\n", "Stream connection from=1.2.3.4:5", slog.LevelDebug},
		{"[INFO] memberlist: Suspect b has failed\n", "Suspect b has failed", slog.LevelInfo},
		{"[WARN] memberlist: Refuting a dead message\n", "Refuting a dead message", slog.LevelWarn},
		{"[ERR] memberlist: Failed to send\n", "Failed to send", slog.LevelError},
		{"[ERROR] memberlist: Failed to receive\n", "Failed to receive", slog.LevelError},
		{"no level here\n", "no level here", slog.LevelInfo},
	} {
		t.Run(tc.msg, func(t *testing.T) {
			h := &recordHandler{}
			newStdLogger(slog.New(h)).Print(tc.line)
			if len(h.records) != 1 {
				t.Fatalf("%d records, want 1", len(h.records))
			}
			if r := h.records[0]; r.Message != tc.msg || r.Level != tc.level {
				t.Fatalf("got %v %q, want %v %q", r.Level, r.Message, tc.level, tc.msg)
			}
		})
	}
}
