package shipper

import (
	"log/slog"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the shipper's metrics. They are created once per process and
// shared by the shippers it runs (normally one).
type Metrics struct{ m *metrics }

type metrics struct {
	dirSyncs          prometheus.Counter
	dirSyncFailures   prometheus.Counter
	uploads           prometheus.Counter
	uploadFailures    prometheus.Counter
	corruptedBlocks   prometheus.Counter
	uploadedCompacted prometheus.Counter
	uploadedBytes     prometheus.Counter
	uploadDuration    prometheus.Histogram
	lastSuccess       prometheus.Gauge
	pending           prometheus.Gauge
}

// NewMetrics registers the shipper metrics on reg (nil: unregistered). Names
// follow Thanos's thanos_shipper_* where Thanos has the metric.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &metrics{
		dirSyncs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "thanos_shipper_dir_syncs_total", Help: "Total number of dir syncs.",
		}),
		dirSyncFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "thanos_shipper_dir_sync_failures_total", Help: "Total number of failed dir syncs.",
		}),
		uploads: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "thanos_shipper_uploads_total", Help: "Total number of uploaded blocks.",
		}),
		uploadFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "thanos_shipper_upload_failures_total", Help: "Total number of block upload failures.",
		}),
		corruptedBlocks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "thanos_shipper_corrupted_blocks_total", Help: "Total number of corrupted blocks.",
		}),
		uploadedCompacted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "stevedore_shipper_uploaded_compacted_blocks_total", Help: "Total number of uploaded blocks of compaction level > 1.",
		}),
		uploadedBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "stevedore_shipper_uploaded_bytes_total", Help: "Total number of bytes of uploaded blocks.",
		}),
		uploadDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "stevedore_shipper_upload_duration_seconds",
			Help:    "Time to upload one block, from staging to meta.json in the bucket.",
			Buckets: []float64{0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600},
		}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "stevedore_shipper_last_successful_upload_time", Help: "Unix time of the last successful block upload.",
		}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "stevedore_shipper_pending_blocks", Help: "Eligible local blocks not uploaded yet, as of the last sync.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.dirSyncs, m.dirSyncFailures, m.uploads, m.uploadFailures, m.corruptedBlocks,
			m.uploadedCompacted, m.uploadedBytes, m.uploadDuration, m.lastSuccess, m.pending)
	}
	return &Metrics{m: m}
}

// warn logs at warning level; logr has no such level but its slog handler does.
func warn(l logr.Logger, msg string, kv ...any) {
	slog.New(logr.ToSlogHandler(l)).Warn(msg, kv...)
}
