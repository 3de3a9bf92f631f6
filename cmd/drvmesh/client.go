package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/drvmesh/drvmesh/api"
)

// client talks to a node's HTTP API.
type client struct {
	base     string
	token    string
	tokenErr error // a --token-file that could not be read; reported by do
	http     *http.Client
}

// clientFlags adds --server, --token and --token-file to fs and returns a
// constructor for the client they describe. The token comes from
// --token, else --token-file, else $DRVMESH_TOKEN, else
// $DRVMESH_TOKEN_FILE: a file or the environment keep it out of the
// process list and the shell history.
func clientFlags(fs *flag.FlagSet) func() *client {
	server := fs.String("server", "", "node URL (default $DRVMESH_SERVER or http://127.0.0.1:7700)")
	token := fs.String("token", "", "admin token for writes (prefer --token-file or $DRVMESH_TOKEN: argv is visible to every user)")
	tokenFile := fs.String("token-file", "", "file holding the admin token (default $DRVMESH_TOKEN_FILE)")
	return func() *client {
		s := *server
		if s == "" {
			s = os.Getenv("DRVMESH_SERVER")
		}
		if s == "" {
			s = "http://127.0.0.1:7700"
		}
		if !strings.Contains(s, "://") {
			s = "http://" + s
		}
		t, err := tokenFrom(*token, *tokenFile, "DRVMESH_TOKEN")
		return &client{base: strings.TrimSuffix(s, "/"), token: t, tokenErr: err, http: &http.Client{}}
	}
}

// tokenFrom picks a token: the flag's value, else the file's content, else
// $env, else the content of the file $env_FILE names.
func tokenFrom(flagValue, file, env string) (string, error) {
	if t := strings.TrimSpace(flagValue); t != "" {
		return t, nil
	}
	if file == "" {
		if t := strings.TrimSpace(os.Getenv(env)); t != "" {
			return t, nil
		}
		file = os.Getenv(env + "_FILE")
	}
	if file == "" {
		return "", nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("%w: read the token file: %v", errUsage, err)
	}
	t := strings.TrimSpace(string(b))
	if t == "" {
		return "", fmt.Errorf("%w: the token file %s is empty", errUsage, file)
	}
	return t, nil
}

// apiError is a non-2xx answer.
type apiError struct {
	status int
	msg    string
}

func (e *apiError) Error() string { return e.msg }

// do sends a request and decodes a JSON answer into out (if non-nil).
func (c *client) do(ctx context.Context, method, path string, body any, out any) error {
	if c.tokenErr != nil {
		return c.tokenErr
	}
	var rd io.Reader
	if body != nil {
		if r, ok := body.(io.Reader); ok {
			rd = r
		} else {
			b, err := json.Marshal(body)
			if err != nil {
				return err
			}
			rd = bytes.NewReader(b)
		}
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return usageErr("bad server URL %q: %v", c.base, err)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if body != nil {
		if _, ok := body.(io.Reader); ok {
			req.Header.Set("Content-Type", "application/octet-stream")
		} else {
			req.Header.Set("Content-Type", "application/json")
		}
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%w: cannot reach %s (is a node running there? set --server or DRVMESH_SERVER): %v", errFailed, c.base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		msg := errorText(data)
		switch resp.StatusCode {
		case http.StatusUnauthorized:
			return fmt.Errorf("%w: %s (pass the admin token with --token-file, DRVMESH_TOKEN or --token)", errUsage, msg)
		case http.StatusBadRequest, http.StatusNotFound, http.StatusConflict, http.StatusUnprocessableEntity:
			return fmt.Errorf("%w: %s", errUsage, msg)
		}
		return &apiError{status: resp.StatusCode, msg: fmt.Sprintf("%s: %s", resp.Status, msg)}
	}
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	if w, ok := out.(io.Writer); ok {
		_, err = io.Copy(w, resp.Body)
		return err
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%w: bad answer from %s: %v", errFailed, c.base, err)
	}
	return nil
}

func errorText(b []byte) string {
	var e api.ErrorResponse
	if json.Unmarshal(b, &e) == nil && e.Message != "" {
		return e.Message
	}
	return strings.TrimSpace(string(b))
}

func (c *client) get(ctx context.Context, path string, q url.Values, out any) error {
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	return c.do(ctx, http.MethodGet, path, nil, out)
}

// printJSON writes v indented to stdout.
func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// isTransient reports whether a failed call is worth retrying (no leader
// yet, node restarting).
func isTransient(err error) bool {
	var ae *apiError
	return errors.As(err, &ae) && (ae.status == http.StatusServiceUnavailable || ae.status == http.StatusBadGateway)
}

// withRetry retries transient errors for up to d.
func withRetry(ctx context.Context, d time.Duration, f func() error) error {
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil || !isTransient(err) || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}
