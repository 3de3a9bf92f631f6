package store

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"

	"golang.org/x/sys/unix"
)

func mkfifo(path string) error { return unix.Mkfifo(path, 0o644) }

func fmtSscan(s string, v any) (int, error) { return fmt.Sscan(s, v) }

func jsonEncoderNoHTML(w io.Writer) *json.Encoder {
	e := json.NewEncoder(w)
	e.SetEscapeHTML(false)
	return e
}

func sha256Sum(b []byte) [32]byte { return sha256.Sum256(b) }
