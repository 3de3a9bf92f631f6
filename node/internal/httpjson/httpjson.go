package httpjson

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
)

// Write sends v as JSON with the status.
func Write(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	_ = enc.Encode(v)
}

// Error sends {"error": message} with the status.
func Error(w http.ResponseWriter, status int, format string, a ...any) {
	Write(w, status, map[string]string{"error": fmt.Sprintf(format, a...)})
}

// ErrorText extracts {"error": "..."} or returns the body trimmed.
func ErrorText(b []byte) string {
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(b, &e) == nil && e.Error != "" {
		return e.Error
	}
	s := strings.TrimSpace(string(b))
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}
