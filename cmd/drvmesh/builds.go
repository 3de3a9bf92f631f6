package main

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/drvmesh/drvmesh/api"
)

func init() {
	register("builds", "list builds, newest first (--state S, --tag k=v, --limit N)", runBuilds)
	register("show", "one build", runShow)
}

// buildsPage is the largest page the API answers (docs/contract.md: at least 500).
const buildsPage = 1000

func runBuilds(args []string) error {
	fs := newFlags("builds")
	asJSON := fs.Bool("json", false, "print JSON")
	state := fs.String("state", "", "only builds in this state")
	var tags multiFlag
	fs.Var(&tags, "tag", "only builds with this tag k=v (repeatable)")
	system := fs.String("system", "", "only builds for this system")
	nodeName := fs.String("node", "", "only builds scheduled on or run by this node")
	drv := fs.String("derivation", "", "only builds of this .drv path")
	limit := fs.Int("limit", 50, "at most this many (0: all, fetched a page at a time)")
	mk := clientFlags(fs)
	if pos, err := parseFlags(fs, args); err != nil {
		return err
	} else if len(pos) != 0 {
		return usageErr("builds takes no arguments")
	}
	if *limit < 0 {
		return usageErr("--limit must not be negative")
	}
	q := url.Values{}
	if *state != "" {
		st, err := api.ParseBuildState(*state)
		if err != nil {
			return usageErr("--state: %v", err)
		}
		q.Set("state", string(st))
	}
	for _, t := range tags {
		if !strings.Contains(t, "=") {
			return usageErr("--tag %q: want k=v", t)
		}
		q.Add("tag", t)
	}
	for k, v := range map[string]string{"system": *system, "node": *nodeName, "derivation": *drv} {
		if v != "" {
			q.Set(k, v)
		}
	}
	bs, err := listBuilds(context.Background(), mk(), q, *limit)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(bs)
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATE\tNODE\tPRIO\tCREATED\tDERIVATION")
	for _, b := range bs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", b.ID, b.State, b.Node, b.Priority, b.CreatedAt.Local().Format(time.DateTime), b.Derivation)
	}
	return tw.Flush()
}

// listBuilds fetches up to limit builds (0: all) matching q, newest
// first, a page at a time: each page continues after the last build of
// the one before.
func listBuilds(ctx context.Context, c *client, q url.Values, limit int) ([]api.Build, error) {
	out := []api.Build{}
	for {
		page := buildsPage
		if limit > 0 {
			page = min(page, limit-len(out))
		}
		q.Set("limit", strconv.Itoa(page))
		var bs []api.Build
		if err := c.get(ctx, "/api/v1/builds", q, &bs); err != nil {
			return nil, err
		}
		out = append(out, bs...)
		if len(bs) < page || limit > 0 && len(out) >= limit {
			return out, nil
		}
		q.Set("after", bs[len(bs)-1].ID)
	}
}

func runShow(args []string) error {
	fs := newFlags("show")
	asJSON := fs.Bool("json", false, "print JSON")
	mk := clientFlags(fs)
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageErr("show takes one build id")
	}
	var b api.Build
	if err := mk().get(context.Background(), "/api/v1/builds/"+url.PathEscape(pos[0]), nil, &b); err != nil {
		return err
	}
	if *asJSON {
		return printJSON(b)
	}
	printBuild(&b)
	return nil
}

func printBuild(b *api.Build) {
	fmt.Printf("id:          %s\nderivation:  %s\nsystem:      %s\nstate:       %s\npriority:    %d\n", b.ID, b.Derivation, b.System, b.State, b.Priority)
	if b.Node != "" {
		fmt.Printf("node:        %s\n", b.Node)
	}
	for k, v := range b.Tags {
		fmt.Printf("tag:         %s=%s\n", k, v)
	}
	fmt.Printf("created:     %s\n", b.CreatedAt.Local().Format(time.RFC3339))
	if b.StartedAt != nil {
		fmt.Printf("started:     %s\n", b.StartedAt.Local().Format(time.RFC3339))
	}
	if b.FinishedAt != nil {
		fmt.Printf("finished:    %s\n", b.FinishedAt.Local().Format(time.RFC3339))
	}
	for _, o := range b.Outputs {
		fmt.Printf("output:      %s %s (%s, %d bytes)\n", o.Name, o.Path, o.NarHash, o.NarSize)
	}
	for i, a := range b.Attempts {
		fmt.Printf("attempt %d:   %s on %s %s\n", i+1, a.Result, a.Node, a.Error)
	}
	if b.Error != "" {
		fmt.Printf("error:       %s\n", b.Error)
	}
}
