// Command benchserver serves a binary cache from an in-memory index of N
// narinfos and one large nar, and writes the same files under DIR/www so
// that another web server can serve identical bytes. bench/narcache.sh
// runs it beside nginx. The large nar is the same on every run; narinfos
// differ only in their signature.
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	_ "net/http/pprof"
	"os"
	"path/filepath"

	"github.com/drvmesh/drvmesh/narcache"
	"github.com/drvmesh/drvmesh/store"
)

func main() {
	dir := flag.String("dir", "", "work directory (required)")
	n := flag.Int("n", 10000, "number of narinfos")
	sizeMB := flag.Int("size", 256, "size of the large nar in MiB")
	listen := flag.String("listen", "127.0.0.1:0", "listen address")
	pprofAddr := flag.String("pprof", "", "serve net/http/pprof on this address (e.g. 127.0.0.1:6060)")
	flag.Parse()
	if *dir == "" {
		log.Fatal("-dir is required")
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(io.Discard, nil)))
	d, err := narcache.NewDisk(narcache.DiskConfig{Dir: filepath.Join(*dir, "data"),
		Compressions: []string{narcache.CompressionNone}})
	if err != nil {
		log.Fatal(err)
	}
	res, err := d.Ingest(context.Background(), bytes.NewReader(bigNar(*sizeMB<<20)), narcache.Expect{})
	if err != nil {
		log.Fatal(err)
	}
	sk, err := store.GenerateKey("bench-1")
	if err != nil {
		log.Fatal(err)
	}
	idx := narcache.NewMemIndex()
	var paths []string
	for i := range *n {
		sum := sha256.Sum256(fmt.Appendf(nil, "path %d", i))
		hp := store.EncodeNix32(store.CompressHash(sum[:], 20))
		idx.Put(narcache.Entry{Info: &store.NarInfo{StorePath: "/nix/store/" + hp + "-bench-" + fmt.Sprint(i),
			NarHash: res.NarHash, NarSize: res.NarSize,
			References: []string{hp + "-bench-" + fmt.Sprint(i)}}, Files: res.Files, Version: 1})
		paths = append(paths, "/"+hp+".narinfo")
	}
	h, err := narcache.NewHandler(narcache.HandlerConfig{Disk: d, Index: idx, Key: &sk, CacheSize: *n})
	if err != nil {
		log.Fatal(err)
	}
	www := filepath.Join(*dir, "www")
	if err := os.MkdirAll(filepath.Join(www, "nar"), 0o755); err != nil {
		log.Fatal(err)
	}
	for _, p := range paths {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", p, nil))
		if rec.Code != 200 {
			log.Fatalf("%s: %d", p, rec.Code)
		}
		if err := os.WriteFile(filepath.Join(www, p), rec.Body.Bytes(), 0o644); err != nil {
			log.Fatal(err)
		}
	}
	narURL := "/" + res.Files[0].URL()
	src := filepath.Join(d.Dir(), filepath.Base(narURL))
	if err := os.Link(src, filepath.Join(www, narURL)); err != nil {
		log.Fatal(err)
	}
	var list bytes.Buffer
	for _, p := range paths {
		list.WriteString(p + "\n")
	}
	if err := os.WriteFile(filepath.Join(*dir, "narinfos.txt"), list.Bytes(), 0o644); err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(*dir, "nar.txt"), []byte(narURL+"\n"), 0o644); err != nil {
		log.Fatal(err)
	}
	if *pprofAddr != "" {
		go func() { log.Println(http.ListenAndServe(*pprofAddr, nil)) }()
	}
	srv := &http.Server{Addr: *listen, Handler: h}
	fmt.Println("ready")
	log.Fatal(srv.ListenAndServe())
}

// bigNar is a NAR of one regular file of n pseudo-random bytes, the same
// on every run so that several servers can serve identical files.
func bigNar(n int) []byte {
	str := func(b, s []byte) []byte {
		var l [8]byte
		for i := range 8 {
			l[i] = byte(uint64(len(s)) >> (8 * i))
		}
		b = append(append(b, l[:]...), s...)
		return append(b, make([]byte, (8-len(s)%8)%8)...)
	}
	content := make([]byte, n)
	_, _ = rand.NewChaCha8([32]byte{'n', 'a', 'r'}).Read(content)
	b := make([]byte, 0, n+200)
	for _, s := range []string{"nix-archive-1", "(", "type", "regular", "contents"} {
		b = str(b, []byte(s))
	}
	return str(str(b, content), []byte(")"))
}
