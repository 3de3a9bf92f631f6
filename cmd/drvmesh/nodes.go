package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/drvmesh/drvmesh/api"
)

func init() {
	register("nodes", "members: name, liveness, raft role, systems, slots, running builds, addresses", runNodes)
}

func runNodes(args []string) error {
	fs := newFlags("nodes")
	asJSON := fs.Bool("json", false, "print JSON")
	mk := clientFlags(fs)
	if pos, err := parseFlags(fs, args); err != nil {
		return err
	} else if len(pos) != 0 {
		return usageErr("nodes takes no arguments")
	}
	var nodes []api.Node
	if err := mk().get(context.Background(), "/api/v1/nodes", nil, &nodes); err != nil {
		return err
	}
	if *asJSON {
		return printJSON(nodes)
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATUS\tRAFT\tSYSTEMS\tRUNNING/MAX\tHTTP")
	for _, n := range nodes {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d/%d\t%s\n", n.Name, n.Status, n.Raft, strings.Join(n.Systems, ","), n.Running, n.MaxJobs, n.HTTP)
	}
	return tw.Flush()
}
