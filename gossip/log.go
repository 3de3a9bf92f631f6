package gossip

import (
	"context"
	"log"
	"log/slog"
	"strings"
)

// Log keys this package uses.
const (
	logKeyNode   = "node"
	logKeyAddr   = "addr"
	logKeyStatus = "status"
	logKeyErr    = "err"
)

// newStdLogger adapts l to the *log.Logger memberlist writes to. Each
// memberlist line, "[LEVEL] memberlist: message", becomes one slog record at
// the matching level.
func newStdLogger(l *slog.Logger) *log.Logger {
	return log.New(slogWriter{l: l}, "", 0)
}

type slogWriter struct{ l *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	line := strings.TrimSpace(string(p))
	level := slog.LevelInfo
	if strings.HasPrefix(line, "[") {
		if end := strings.IndexByte(line, ']'); end > 0 {
			switch line[1:end] {
			case "DEBUG", "TRACE":
				level = slog.LevelDebug
			case "INFO":
				level = slog.LevelInfo
			case "WARN":
				level = slog.LevelWarn
			case "ERR", "ERROR":
				level = slog.LevelError
			}
			line = strings.TrimSpace(line[end+1:])
		}
	}
	line = strings.TrimPrefix(line, "memberlist: ")
	w.l.Log(context.Background(), level, line, "component", "memberlist")
	return len(p), nil
}
