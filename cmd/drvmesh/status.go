package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/drvmesh/drvmesh/api"
)

func init() {
	register("status", "this node's view: leader, term, commit index, voters, queue sizes", runStatus)
}

func runStatus(args []string) error {
	fs := newFlags("status")
	asJSON := fs.Bool("json", false, "print JSON")
	mk := clientFlags(fs)
	if pos, err := parseFlags(fs, args); err != nil {
		return err
	} else if len(pos) != 0 {
		return usageErr("status takes no arguments")
	}
	var st api.Status
	if err := mk().get(context.Background(), "/api/v1/status", nil, &st); err != nil {
		return err
	}
	if *asJSON {
		return printJSON(st)
	}
	leader := st.Leader
	if leader == "" {
		leader = "(none: an election is under way or quorum is lost)"
	}
	fmt.Printf("node:       %s\nleader:     %s\nterm:       %d\ncommit:     %d\nvoters:     %s\nnonvoters:  %s\nqueued:     %d\nrunning:    %d\n",
		st.Node, leader, st.Term, st.CommitIndex, strings.Join(st.Voters, " "), strings.Join(st.Nonvoters, " "), st.Queued, st.Running)
	return nil
}
