package builder

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
)

// Referrer is implemented by backends that can tell a valid path's
// references, which its narinfo must list.
type Referrer interface {
	// References returns the store paths a valid path refers to, sorted,
	// as the daemon recorded them when it registered the path.
	References(ctx context.Context, storePath string) ([]string, error)
}

var (
	_ Referrer = (*Nix)(nil)
	_ Referrer = (*Guix)(nil)
)

// References asks nix-store --query --references.
func (n *Nix) References(ctx context.Context, storePath string) ([]string, error) {
	if err := n.files.checkPath(storePath); err != nil {
		return nil, fmt.Errorf("references of %s: %w", storePath, ErrBadRequest)
	}
	args := append(n.storeArgs(), "--query", "--references", storePath)
	res, err := n.command(Request{}, io.Discard, n.storeBin, args...).run(ctx)
	if err != nil {
		return nil, err
	}
	if res.canceled {
		return nil, ErrCanceled
	}
	if res.exitCode != 0 {
		return nil, fmt.Errorf("nix-store --query --references: %w: %s", ErrBackend, lastLines(res.output, 3))
	}
	return sortedFields(res.stdout), nil
}

// References asks guix gc --references.
func (g *Guix) References(ctx context.Context, storePath string) ([]string, error) {
	if err := g.files.checkPath(storePath); err != nil {
		return nil, fmt.Errorf("references of %s: %w", storePath, ErrBadRequest)
	}
	res, err := command{path: g.bin, args: []string{"gc", "--references", storePath}, log: io.Discard}.run(ctx)
	if err != nil {
		return nil, err
	}
	if res.canceled {
		return nil, ErrCanceled
	}
	if res.exitCode != 0 {
		return nil, fmt.Errorf("guix gc --references: %w: %s", ErrBackend, lastLines(res.output, 3))
	}
	return sortedFields(res.stdout), nil
}

func sortedFields(b []byte) []string {
	f := strings.Fields(string(b))
	sort.Strings(f)
	return f
}
