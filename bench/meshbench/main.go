// Command meshbench times mesh operations for the bench/mesh-*.sh
// scripts against running drvmesh nodes, through their public HTTP API.
//
//	meshbench write   --urls U1,U2 --token T --since NS   time to the first accepted write
//	meshbench member  --urls U1,U2 --name N --token T --since NS   time until every node lists N alive
//	meshbench stats   < numbers                            median, p90, min, max
//
// --since is a Unix time in nanoseconds (date +%s%N) taken just before the
// event being timed (a kill -9, a join); results are milliseconds since it.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/drvmesh/drvmesh/api"
	"github.com/drvmesh/drvmesh/store"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: meshbench write|member|stats [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "write":
		err = runWrite(os.Args[2:])
	case "member":
		err = runMember(os.Args[2:])
	case "stats":
		err = runStats()
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "meshbench:", err)
		os.Exit(1)
	}
}

type common struct {
	urls    []string
	since   time.Time
	timeout time.Duration
}

func commonFlags(fs *flag.FlagSet) func() (common, error) {
	urls := fs.String("urls", "", "node URLs, comma-separated")
	since := fs.Int64("since", 0, "start time, Unix nanoseconds (default: now)")
	timeout := fs.Duration("timeout", 30*time.Second, "give up after this long")
	return func() (common, error) {
		c := common{timeout: *timeout, since: time.Now()}
		if *since != 0 {
			c.since = time.Unix(0, *since)
		}
		for _, u := range strings.Split(*urls, ",") {
			if u = strings.TrimSpace(u); u != "" {
				if !strings.Contains(u, "://") {
					u = "http://" + u
				}
				c.urls = append(c.urls, strings.TrimSuffix(u, "/"))
			}
		}
		if len(c.urls) == 0 {
			return c, errors.New("--urls is required")
		}
		return c, nil
	}
}

func elapsed(since time.Time) {
	fmt.Printf("%.1f\n", float64(time.Since(since).Microseconds())/1000)
}

// runWrite uploads a fresh content-addressed source (a real raft write)
// to the nodes in turn until one accepts it.
func runWrite(args []string) error {
	fs := flag.NewFlagSet("write", flag.ExitOnError)
	mk := commonFlags(fs)
	token := fs.String("token", "", "admin token")
	_ = fs.Parse(args)
	c, err := mk()
	if err != nil {
		return err
	}
	nar, q, err := freshSource()
	if err != nil {
		return err
	}
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := c.since.Add(c.timeout)
	var last error
	for i := 0; time.Now().Before(deadline); i++ {
		u := c.urls[i%len(c.urls)] + "/api/v1/nars?" + q.Encode()
		req, _ := http.NewRequest(http.MethodPut, u, bytes.NewReader(nar))
		req.Header.Set("Authorization", "Bearer "+*token)
		resp, err := client.Do(req)
		if err == nil {
			var body bytes.Buffer
			_, _ = body.ReadFrom(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				elapsed(c.since)
				return nil
			}
			err = fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(body.String()))
		}
		last = err
		time.Sleep(5 * time.Millisecond)
	}
	return fmt.Errorf("no write accepted in %v: %v", c.timeout, last)
}

// freshSource makes the NAR of a one-file source with random content and
// the upload query for its content-addressed store path.
func freshSource() ([]byte, url.Values, error) {
	dir, err := os.MkdirTemp("", "meshbench")
	if err != nil {
		return nil, nil, err
	}
	defer os.RemoveAll(dir)
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	f := filepath.Join(dir, "src")
	if err := os.WriteFile(f, []byte(hex.EncodeToString(b)+"\n"), 0o644); err != nil {
		return nil, nil, err
	}
	var buf bytes.Buffer
	if err := store.DumpPath(&buf, f); err != nil {
		return nil, nil, err
	}
	h, size, err := store.CheckNar(bytes.NewReader(buf.Bytes()))
	if err != nil {
		return nil, nil, err
	}
	path := store.MakeSourcePath("/nix/store", "meshbench-src", h, nil, false)
	return buf.Bytes(), url.Values{"path": {path}, "nar_hash": {h.String()}, "nar_size": {strconv.FormatInt(size, 10)}}, nil
}

// runMember polls GET /api/v1/nodes on every node until each lists the
// named node alive.
func runMember(args []string) error {
	fs := flag.NewFlagSet("member", flag.ExitOnError)
	mk := commonFlags(fs)
	name := fs.String("name", "", "the node to wait for")
	token := fs.String("token", "", "admin token (the node list needs it unless --public-read all)")
	_ = fs.Parse(args)
	c, err := mk()
	if err != nil {
		return err
	}
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := c.since.Add(c.timeout)
	seen := map[string]bool{}
	for time.Now().Before(deadline) {
		for _, u := range c.urls {
			if !seen[u] && listsAlive(client, u, *token, *name) {
				seen[u] = true
			}
		}
		if len(seen) == len(c.urls) {
			elapsed(c.since)
			return nil
		}
		time.Sleep(5 * time.Millisecond)
	}
	return fmt.Errorf("%s not alive on every node after %v (%d of %d)", *name, c.timeout, len(seen), len(c.urls))
}

func listsAlive(client *http.Client, base, token, name string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/v1/nodes", nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	var nodes []api.Node
	if json.NewDecoder(resp.Body).Decode(&nodes) != nil {
		return false
	}
	for _, n := range nodes {
		if n.Name == name && n.Status == api.NodeAlive {
			return true
		}
	}
	return false
}

// runStats prints the median, p90 (nearest rank), min and max of the
// numbers on stdin, one a line.
func runStats() error {
	var xs []float64
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		s := strings.TrimSpace(sc.Text())
		if s == "" {
			continue
		}
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return fmt.Errorf("not a number: %q", s)
		}
		xs = append(xs, v)
	}
	if len(xs) == 0 {
		return errors.New("no numbers")
	}
	slices.Sort(xs)
	rank := func(p float64) float64 {
		i := int(p*float64(len(xs))+0.999999) - 1
		return xs[max(0, min(i, len(xs)-1))]
	}
	med := xs[len(xs)/2]
	if len(xs)%2 == 0 {
		med = (xs[len(xs)/2-1] + xs[len(xs)/2]) / 2
	}
	fmt.Printf("n=%d median=%.1f p90=%.1f min=%.1f max=%.1f\n", len(xs), med, rank(0.9), xs[0], xs[len(xs)-1])
	return nil
}
