package httpapi

import (
	"maps"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the HTTP metrics of a node.
type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	// handles caches the series of each route and status: looking them up
	// in the vectors hashes their labels on every request. Copied on
	// write (a new route or status is rare).
	handles   atomic.Pointer[map[routeStatus]series]
	handlesMu sync.Mutex
}

type routeStatus struct {
	route  string
	status int
}

type series struct {
	requests prometheus.Counter
	duration prometheus.Observer
}

// series returns the series of a route and status.
func (m *metrics) series(route string, status int) series {
	key := routeStatus{route, status}
	if h := m.handles.Load(); h != nil {
		if s, ok := (*h)[key]; ok {
			return s
		}
	}
	m.handlesMu.Lock()
	defer m.handlesMu.Unlock()
	old := m.handles.Load()
	next := make(map[routeStatus]series, 1)
	if old != nil {
		if s, ok := (*old)[key]; ok {
			return s
		}
		maps.Copy(next, *old)
	}
	s := series{m.requests.WithLabelValues(route, strconv.Itoa(status)), m.duration.WithLabelValues(route)}
	next[key] = s
	m.handles.Store(&next)
	return s
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "presence_http_requests_total",
			Help: "HTTP requests by route and status.",
		}, []string{"route", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "presence_http_request_duration_seconds",
			Help:    "HTTP request latency by route.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"route"}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.duration)
	}
	return m
}

func (m *metrics) middleware(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		err := next(c)
		if err != nil {
			c.Error(err) // write the error now, so its status is counted
		}
		route := c.Path()
		if route == "" {
			route = "unmatched"
		}
		s := m.series(route, c.Response().Status)
		s.requests.Inc()
		s.duration.Observe(time.Since(start).Seconds())
		return nil
	}
}
