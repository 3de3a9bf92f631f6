package builder

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// smallNix makes n tiny derivations, unique per nonce, so that every
// benchmark iteration really builds.
const smallNix = `{ n, nonce }: builtins.genList (i: derivation {
  name = "small-${toString i}";
  system = builtins.currentSystem;
  builder = "/bin/sh";
  args = [ "-c" "echo ${nonce}-${toString i} > $out" ];
}) n`

// smallDrvs instantiates n fresh small derivations in store A and puts
// their .drv files in the fixture's binary cache.
func smallDrvs(b *testing.B, f *fixture, n int) []string {
	b.Helper()
	expr := filepath.Join(f.dir, "small.nix")
	if err := os.WriteFile(expr, []byte(smallNix), 0o644); err != nil {
		b.Fatal(err)
	}
	nonce := strconv.FormatInt(time.Now().UnixNano(), 36)
	out := f.run(b, "nix-instantiate", "--store", f.localA(), "--arg", "n", strconv.Itoa(n),
		"--argstr", "nonce", nonce, expr)
	drvs := strings.Fields(out)
	if len(drvs) != n {
		b.Fatalf("nix-instantiate printed %q", out)
	}
	to := "file://" + f.cache + "?compression=none&secret-key=" + filepath.Join(f.dir, "sk")
	f.run(b, "nix", append([]string{"copy", "--derivation", "--store", f.localA(), "--to", to}, drvs...)...)
	return drvs
}

// BenchmarkDaemon_BuildSmall builds a tiny derivation per iteration over
// a pooled daemon connection (nix-daemon --stdio on a chroot store), the
// .drv read from another store's daemon.
func BenchmarkDaemon_BuildSmall(b *testing.B) {
	f := newDaemonFixture(b)
	benchBuild(b, f.fixture, func(ctx context.Context, drv string) (Result, error) {
		return f.nd.Build(ctx, Request{DrvPath: drv}, nil)
	})
}

// BenchmarkNix_BuildSmall builds the same kind of derivation with the
// nix-store fallback (nix copy --derivation from the HTTP cache, then
// nix-store --realise) into a chroot store.
func BenchmarkNix_BuildSmall(b *testing.B) {
	f := newFixture(b)
	benchBuild(b, f, func(ctx context.Context, drv string) (Result, error) {
		req := f.request("dep")
		req.DrvPath = drv
		return f.builder.Build(ctx, req, nil)
	})
}

func benchBuild(b *testing.B, f *fixture, build func(context.Context, string) (Result, error)) {
	ctx := context.Background()
	drvs := smallDrvs(b, f, b.N)
	b.ResetTimer()
	for i := range b.N {
		res, err := build(ctx, drvs[i])
		if err != nil {
			b.Fatal(err)
		}
		if res.Substituted || res.Outputs["out"] == "" {
			b.Fatalf("result %+v", res)
		}
	}
}
