//go:build !linux

package testbed

import "fmt"

// inNamespace needs Linux network namespaces.
func inNamespace(nsPath string, fn func() error) error {
	return fmt.Errorf("enter %s: %w", nsPath, ErrUnsupported)
}
