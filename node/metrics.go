package node

import (
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the node's Prometheus series, on a registry of its own so
// several nodes can live in one process (tests).
type metrics struct {
	reg          *prometheus.Registry
	assigned     prometheus.Counter
	badPeers     prometheus.Counter
	hookRuns     *prometheus.CounterVec
	buildSeconds prometheus.Histogram
	buildPhase   *prometheus.HistogramVec
	requests     *prometheus.CounterVec
	latency      prometheus.Histogram
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		assigned: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "drvmesh_builds_assigned_total", Help: "Builds this node assigned while leading.",
		}),
		badPeers: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "drvmesh_bad_peer_nars_total", Help: "Nars from peers refused because they failed verification.",
		}),
		hookRuns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "drvmesh_hook_runs_total", Help: "Hook runs by event and result.",
		}, []string{"event", "result"}),
		buildSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "drvmesh_build_seconds", Help: "Time spent in the builder per build on this node.",
			Buckets: prometheus.ExponentialBuckets(0.1, 2, 16),
		}),
		buildPhase: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "drvmesh_build_phase_seconds",
			Help:    "Time per build phase on this node: start (recording the start), prepare (reading the inputs from the state), build (the builder, substitution of inputs included), store (dumping, compressing, scanning and signing the outputs), finish (recording the result with the outputs' narinfos).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 18),
		}, []string{"phase"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "drvmesh_http_requests_total", Help: "HTTP requests by status code.",
		}, []string{"code"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "drvmesh_http_request_seconds", Help: "HTTP request latency.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
		}),
	}
	m.reg.MustRegister(m.assigned, m.badPeers, m.hookRuns, m.buildSeconds, m.buildPhase, m.requests, m.latency,
		prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	return m
}

// registerState adds gauges read from the node when scraped.
func (m *metrics) registerState(n *Node) {
	gauge := func(name, help string, f func() float64) {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f))
	}
	gauge("drvmesh_raft_leader", "1 when this node leads the mesh.", func() float64 {
		if n.raft.IsLeader() {
			return 1
		}
		return 0
	})
	gauge("drvmesh_raft_commit_index", "Raft commit index.", func() float64 { _, c, _ := n.raft.Stats(); return float64(c) })
	gauge("drvmesh_builds_queued", "Builds waiting for a node.", func() float64 { return float64(n.api.Status().Queued) })
	gauge("drvmesh_builds_running", "Builds scheduled or building anywhere.", func() float64 { return float64(n.api.Status().Running) })
	gauge("drvmesh_jobs_running", "Builds running on this node.", func() float64 { return float64(n.agent.Running()) })
	gauge("drvmesh_gossip_members", "Members gossip knows.", func() float64 { return float64(n.gossip.NumMembers()) })
	gauge("drvmesh_raft_rejected_entries", "Raft entries this node refused to apply because they did not decode or named an unknown command.", func() float64 {
		return float64(n.raft.State().RejectedEntries())
	})
}

// phase records the time since start as one build phase.
func (m *metrics) phase(name string, start time.Time) {
	m.buildPhase.WithLabelValues(name).Observe(time.Since(start).Seconds())
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (s *statusRecorder) WriteHeader(c int) { s.code = c; s.ResponseWriter.WriteHeader(c) }
func (s *statusRecorder) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// ReadFrom keeps the real writer's sendfile path for file bodies.
func (s *statusRecorder) ReadFrom(r io.Reader) (int64, error) { return io.Copy(s.ResponseWriter, r) }

// Unwrap lets http.ResponseController reach the real writer (sendfile).
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// instrument counts requests by status and times them.
func (m *metrics) instrument(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, code: 200}
		h.ServeHTTP(rec, r)
		m.requests.WithLabelValues(strconv.Itoa(rec.code)).Inc()
		m.latency.Observe(time.Since(start).Seconds())
	})
}
