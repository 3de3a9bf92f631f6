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

func runBuilds(args []string) error {
	fs := newFlags("builds")
	asJSON := fs.Bool("json", false, "print JSON")
	state := fs.String("state", "", "only builds in this state")
	var tags multiFlag
	fs.Var(&tags, "tag", "only builds with this tag k=v (repeatable)")
	limit := fs.Int("limit", 50, "at most this many")
	mk := clientFlags(fs)
	if pos, err := parseFlags(fs, args); err != nil {
		return err
	} else if len(pos) != 0 {
		return usageErr("builds takes no arguments")
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
	q.Set("limit", strconv.Itoa(*limit))
	var bs []api.Build
	if err := mk().get(context.Background(), "/api/v1/builds", q, &bs); err != nil {
		return err
	}
	if *asJSON {
		if bs == nil {
			bs = []api.Build{}
		}
		return printJSON(bs)
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATE\tNODE\tPRIO\tCREATED\tDERIVATION")
	for _, b := range bs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", b.ID, b.State, b.Node, b.Priority, b.CreatedAt.Local().Format(time.DateTime), b.Derivation)
	}
	return tw.Flush()
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
