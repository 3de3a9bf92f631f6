//go:build !linux

package testbed

import (
	"context"
	"fmt"
	"net"
)

// dialIn needs Linux network namespaces.
func dialIn(ctx context.Context, nsPath, network, addr string) (net.Conn, error) {
	return nil, fmt.Errorf("dial in %s: %w", nsPath, ErrUnsupported)
}
