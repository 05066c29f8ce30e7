package bucketstore

import (
	"sync/atomic"

	"github.com/cespare/xxhash/v2"
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	blocksLoaded      prometheus.Gauge
	blockLoads        prometheus.Counter
	blockLoadFailures prometheus.Counter
	blockDrops        prometheus.Counter
	syncs             prometheus.Counter
	syncFailures      prometheus.Counter
	lastSync          prometheus.Gauge
	ihBuildDuration   prometheus.Histogram
	ihLoadDuration    prometheus.Histogram
	ihBytes           prometheus.Gauge

	seriesDuration  prometheus.Histogram
	blocksQueried   prometheus.Histogram
	queriesDropped  *prometheus.CounterVec
	gateInFlight    prometheus.Gauge
	gateMax         prometheus.Gauge
	gateWait        prometheus.Histogram
	postingsTouched prometheus.Counter
	seriesTouched   prometheus.Counter
	seriesReturned  prometheus.Counter
	chunksReturned  prometheus.Counter
	samplesReturned prometheus.Counter
	bytesFetched    prometheus.Counter
	fetchRequests   prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		blocksLoaded: prometheus.NewGauge(prometheus.GaugeOpts{Name: "thanos_bucket_store_blocks_loaded", Help: "Number of currently loaded blocks."}),
		blockLoads:   prometheus.NewCounter(prometheus.CounterOpts{Name: "thanos_bucket_store_block_loads_total", Help: "Total number of remote block loading attempts."}),
		blockLoadFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "thanos_bucket_store_block_load_failures_total", Help: "Total number of failed remote block loading attempts."}),
		blockDrops:   prometheus.NewCounter(prometheus.CounterOpts{Name: "thanos_bucket_store_block_drops_total", Help: "Total number of local blocks that were dropped."}),
		syncs:        prometheus.NewCounter(prometheus.CounterOpts{Name: "stevedore_store_syncs_total", Help: "Total number of bucket syncs."}),
		syncFailures: prometheus.NewCounter(prometheus.CounterOpts{Name: "stevedore_store_sync_failures_total", Help: "Total number of failed bucket syncs."}),
		lastSync: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "stevedore_store_last_successful_sync_timestamp_seconds", Help: "Unix time of the last successful bucket sync."}),
		ihBuildDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "thanos_bucket_store_indexheader_download_duration_seconds", Help: "Duration of building an index-header from the bucket in seconds.",
			Buckets: []float64{0.1, 0.2, 0.5, 1, 2, 5, 15, 30, 60, 90, 120, 300}}),
		ihLoadDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "thanos_bucket_store_indexheader_load_duration_seconds", Help: "Duration of loading an index-header from disk in seconds.",
			Buckets: []float64{0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 15, 30}}),
		ihBytes: prometheus.NewGauge(prometheus.GaugeOpts{Name: "stevedore_store_index_header_bytes", Help: "Total size of the index-headers on local disk."}),
		seriesDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "thanos_bucket_store_series_get_all_duration_seconds", Help: "Time it takes until all per-block prepares and loads for a query are finished.",
			Buckets: []float64{0.001, 0.01, 0.1, 0.3, 0.6, 1, 3, 6, 9, 20, 30, 60, 90, 120}}),
		blocksQueried: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "thanos_bucket_store_series_blocks_queried", Help: "Number of blocks in a bucket store that were touched to satisfy a query.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 10)}),
		queriesDropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "thanos_bucket_store_queries_dropped_total", Help: "Number of queries that were dropped due to the limit."}, []string{"reason"}),
		gateInFlight: prometheus.NewGauge(prometheus.GaugeOpts{Name: "thanos_bucket_store_series_gate_queries_in_flight", Help: "Number of Series calls being served."}),
		gateMax:      prometheus.NewGauge(prometheus.GaugeOpts{Name: "thanos_bucket_store_series_gate_queries_max", Help: "Maximum number of concurrent Series calls."}),
		gateWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "thanos_bucket_store_series_gate_duration_seconds", Help: "How many seconds it took for Series calls to wait at the gate.",
			Buckets: []float64{0.01, 0.1, 0.3, 0.6, 1, 3, 6, 9, 20, 30, 60, 90, 120}}),
		postingsTouched: prometheus.NewCounter(prometheus.CounterOpts{Name: "stevedore_store_postings_touched_total", Help: "Postings lists read to answer queries."}),
		seriesTouched:   prometheus.NewCounter(prometheus.CounterOpts{Name: "stevedore_store_series_touched_total", Help: "Series entries read to answer queries."}),
		seriesReturned:  prometheus.NewCounter(prometheus.CounterOpts{Name: "stevedore_store_series_returned_total", Help: "Series returned by Series calls."}),
		chunksReturned:  prometheus.NewCounter(prometheus.CounterOpts{Name: "stevedore_store_chunks_returned_total", Help: "Chunks returned by Series calls."}),
		samplesReturned: prometheus.NewCounter(prometheus.CounterOpts{Name: "stevedore_store_samples_returned_total", Help: "Samples in the chunks returned by Series calls."}),
		bytesFetched:    prometheus.NewCounter(prometheus.CounterOpts{Name: "stevedore_store_bucket_fetched_bytes_total", Help: "Bytes read from the bucket (or caching bucket) for queries."}),
		fetchRequests:   prometheus.NewCounter(prometheus.CounterOpts{Name: "stevedore_store_bucket_range_requests_total", Help: "Ranged reads issued to the bucket for queries."}),
	}
	if reg != nil {
		reg.MustRegister(m.blocksLoaded, m.blockLoads, m.blockLoadFailures, m.blockDrops, m.syncs, m.syncFailures, m.lastSync,
			m.ihBuildDuration, m.ihLoadDuration, m.ihBytes, m.seriesDuration, m.blocksQueried, m.queriesDropped,
			m.gateInFlight, m.gateMax, m.gateWait, m.postingsTouched, m.seriesTouched, m.seriesReturned,
			m.chunksReturned, m.samplesReturned, m.bytesFetched, m.fetchRequests)
	}
	for _, r := range []string{"series", "samples"} {
		m.queriesDropped.WithLabelValues(r)
	}
	return m
}

// queryStats counts what one request touched; concurrent block readers share it.
type queryStats struct {
	postings, series, chunks, samples, fetchedBytes, requests atomic.Int64
	seriesReturned                                            atomic.Int64
}

func (s *queryStats) addFetched(n int) {
	if s == nil {
		return
	}
	s.fetchedBytes.Add(int64(n))
	s.requests.Add(1)
}

func (s *queryStats) addPostings(n int) {
	if s != nil {
		s.postings.Add(int64(n))
	}
}

func (m *metrics) observe(s *queryStats) {
	m.postingsTouched.Add(float64(s.postings.Load()))
	m.seriesTouched.Add(float64(s.series.Load()))
	m.seriesReturned.Add(float64(s.seriesReturned.Load()))
	m.chunksReturned.Add(float64(s.chunks.Load()))
	m.samplesReturned.Add(float64(s.samples.Load()))
	m.bytesFetched.Add(float64(s.fetchedBytes.Load()))
	m.fetchRequests.Add(float64(s.requests.Load()))
}

// hashChunk is the xxhash64 of the chunk data, which Thanos queriers may use
// to detect identical chunks from replicas.
func hashChunk(b []byte) uint64 { return xxhash.Sum64(b) }
