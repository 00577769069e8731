package httpapi

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/payledger/payledger/ledger"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the server's Prometheus metrics, in a registry of its own so
// that nothing global leaks in.
type metrics struct {
	reg          *prometheus.Registry
	requests     *prometheus.HistogramVec
	authFailures *prometheus.CounterVec
	lockouts     prometheus.Counter
	handler      http.Handler
}

func newMetrics(s *Server) *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	m.requests = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "payledger_http_request_duration_seconds",
		Help:    "HTTP requests by route and status, and how long they took.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"route", "status"})
	m.authFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "payledger_auth_failures_total",
		Help: "Failed authentications (bad bearer credentials, failed logins) and requests refused while throttled.",
	}, []string{"kind"})
	m.lockouts = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "payledger_lockouts_total",
		Help: "Responses refusing access because an account is locked (R9).",
	})
	lag := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "payledger_projection_lag_events",
		Help: "Events committed to the log that the read models have not applied yet.",
	}, func() float64 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		head, err := s.store.Head(ctx)
		if err != nil {
			return -1
		}
		return float64(head - s.rm.Checkpoint())
	})
	m.reg.MustRegister(m.requests, m.authFailures, m.lockouts, lag,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.handler = promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
	return m
}

// Register adds collectors to the server's metrics (the store's counters,
// which cmd/payledger wires).
func (s *Server) Register(cs ...prometheus.Collector) error {
	for _, c := range cs {
		if err := s.metrics.reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// SetMetricsPublic serves GET /metrics without credentials, for a
// deployment whose network already keeps it private; otherwise it needs a
// staff key.
func (s *Server) SetMetricsPublic(public bool) { s.metricsPublic = public }

func (s *Server) serveMetrics(w http.ResponseWriter, r *http.Request) {
	s.metrics.handler.ServeHTTP(w, r)
}

// observe records a served request in the metrics and the log: its route
// pattern (never the path, which holds account ids), status, duration and
// the kind of caller, never a credential or a body.
func (s *Server) observe(r *http.Request, route string, status int, took time.Duration, by ledger.Actor) {
	if route == "" {
		route = "unrouted"
	}
	s.metrics.requests.WithLabelValues(route, strconv.Itoa(status)).Observe(took.Seconds())
	if status == http.StatusLocked {
		s.metrics.lockouts.Inc()
	}
	caller := "public"
	switch {
	case by.Holder():
		caller = "holder"
	case by.Staff():
		caller = "staff:" + string(by.Role)
	}
	attrs := []slog.Attr{slog.String("route", route), slog.Int("status", status),
		slog.Float64("ms", float64(took.Microseconds())/1000), slog.String("caller", caller)}
	if by.Staff() {
		attrs = append(attrs, slog.String("staff_key", by.KeyID))
	}
	s.log.LogAttrs(r.Context(), slog.LevelInfo, "request", attrs...)
}
