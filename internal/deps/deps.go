package deps
import (
_ "github.com/hashicorp/raft"
_ "github.com/hashicorp/raft-boltdb/v2"
_ "github.com/hashicorp/memberlist"
_ "github.com/hashicorp/go-metrics"
_ "github.com/libp2p/go-libp2p"
_ "github.com/ulikunitz/xz"
_ "github.com/klauspost/compress/zstd"
_ "go.etcd.io/bbolt"
_ "github.com/prometheus/client_golang/prometheus"
_ "filippo.io/edwards25519"
)
