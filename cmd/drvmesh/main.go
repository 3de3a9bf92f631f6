// Command drvmesh is the one binary of a drvmesh build farm: it runs a node,
// talks to a node as a client, and carries the store-format tools.
package main

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
)

// command is one subcommand. run gets the arguments after the command's
// name (for "drv show", after "show").
type command struct {
	usage string
	run   func(args []string) error
}

// commands is filled by each subcommand's file in its init.
var commands = map[string]command{}

func register(name, usage string, run func(args []string) error) {
	if _, dup := commands[name]; dup {
		panic("duplicate command " + name)
	}
	commands[name] = command{usage: usage, run: run}
}

// errUsage marks bad usage or bad input: exit status 2.
var errUsage = errors.New("usage")

// errFailed marks an operation that ran and failed: exit status 1.
var errFailed = errors.New("failed")

// usageErr builds an exit-2 error with a one-line reason.
func usageErr(format string, a ...any) error {
	return fmt.Errorf("%w: %s", errUsage, fmt.Sprintf(format, a...))
}

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		printHelp()
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	// Two-word commands ("drv show", "nar dump") are registered with a space.
	name, rest := args[0], args[1:]
	if len(rest) > 0 {
		if _, ok := commands[name+" "+rest[0]]; ok {
			name, rest = name+" "+rest[0], rest[1:]
		}
	}
	c, ok := commands[name]
	if !ok {
		fmt.Fprintf(os.Stderr, "drvmesh: unknown command %q; run 'drvmesh help' for the list\n", strings.Join(args[:min(2, len(args))], " "))
		return 2
	}
	return exitCode(c.run(rest))
}

// exitCode maps an error to the exit status of docs/contract.md: 0 ok, 1 failed,
// 2 bad usage or input. It prints the error as one line.
func exitCode(err error) int {
	if err == nil {
		return 0
	}
	msg := err.Error()
	if errors.Is(err, errUsage) {
		msg = strings.TrimPrefix(msg, errUsage.Error()+": ")
	} else if errors.Is(err, errFailed) {
		msg = strings.TrimPrefix(msg, errFailed.Error()+": ")
	}
	fmt.Fprintln(os.Stderr, "drvmesh: "+strings.ReplaceAll(msg, "\n", " "))
	switch {
	case errors.Is(err, errUsage), isBadInput(err):
		return 2
	default:
		return 1
	}
}

func printHelp() {
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintln(os.Stderr, "usage: drvmesh COMMAND [flags] [args]\n\ncommands:")
	for _, n := range names {
		fmt.Fprintf(os.Stderr, "  %-16s %s\n", n, commands[n].usage)
	}
}
