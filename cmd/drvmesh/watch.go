package main

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"time"

	"github.com/drvmesh/drvmesh/api"
)

func init() {
	register("watch", "follow builds until every one ends; exit 0 only if all succeeded", runWatch)
	register("cancel", "cancel queued or running builds", runCancel)
}

func runWatch(args []string) error {
	fs := newFlags("watch")
	asJSON := fs.Bool("json", false, "print the final builds as JSON")
	quiet := fs.Bool("quiet", false, "print only the final states")
	mk := clientFlags(fs)
	ids, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(ids) == 0 {
		return usageErr("watch takes one or more build ids")
	}
	c := mk()
	ctx := context.Background()
	final, err := watchBuilds(ctx, c, ids, func(b *api.Build) {
		if !*quiet && !*asJSON {
			fmt.Fprintf(os.Stderr, "%s %s %s%s\n", time.Now().Format(time.TimeOnly), b.ID, b.State, onNode(b))
		}
	})
	if err != nil {
		return err
	}
	if *asJSON {
		_ = printJSON(final)
	} else {
		for _, b := range final {
			fmt.Printf("%s\t%s\t%s\n", b.ID, b.State, b.Derivation)
		}
	}
	for _, b := range final {
		if b.State != api.StateSucceeded {
			return fmt.Errorf("%w: build %s %s%s", errFailed, b.ID, b.State, errSuffix(b))
		}
	}
	return nil
}

func onNode(b *api.Build) string {
	if b.Node == "" {
		return ""
	}
	return " on " + b.Node
}

func errSuffix(b api.Build) string {
	if b.Error == "" {
		return ""
	}
	return ": " + b.Error
}

// watchBuilds polls until every build has ended, reporting each state
// change, and returns the final builds in the order of ids.
func watchBuilds(ctx context.Context, c *client, ids []string, changed func(*api.Build)) ([]api.Build, error) {
	last := map[string]string{}
	for {
		out := make([]api.Build, len(ids))
		all := true
		for i, id := range ids {
			err := withRetry(ctx, 30*time.Second, func() error {
				return c.get(ctx, "/api/v1/builds/"+url.PathEscape(id), nil, &out[i])
			})
			if err != nil {
				return nil, err
			}
			if s := string(out[i].State) + out[i].Node; last[id] != s {
				last[id] = s
				changed(&out[i])
			}
			if !out[i].State.Final() {
				all = false
			}
		}
		if all {
			return out, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func runCancel(args []string) error {
	fs := newFlags("cancel")
	mk := clientFlags(fs)
	ids, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(ids) == 0 {
		return usageErr("cancel takes one or more build ids")
	}
	var res api.CancelResponse
	if err := mk().do(context.Background(), "POST", "/api/v1/cancel", api.CancelRequest{IDs: ids}, &res); err != nil {
		return err
	}
	for _, id := range res.Canceled {
		fmt.Println(id)
	}
	return nil
}
