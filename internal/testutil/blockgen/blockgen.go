// Package blockgen writes TSDB blocks for tests with Prometheus's own block
// writer, so test data is generated in seconds instead of scraped for hours.
package blockgen

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/tsdb/tsdbutil"
	"github.com/thanos-io/objstore"

	"github.com/stevedore-dev/stevedore/internal/block"
)

// Spec describes one generated block.
type Spec struct {
	// MinTime and MaxTime (Unix ms) bound the samples: [MinTime, MaxTime).
	MinTime, MaxTime int64
	// Step between samples in ms (default 15s).
	Step int64
	// Series is the number of float series per metric name.
	Series int
	// Metrics are the metric names (default: one, "test_metric").
	Metrics []string
	// HistogramSeries is the number of native histogram series (metric "test_histogram").
	HistogramSeries int
	// ExtraLabels are added to every series (not external labels).
	ExtraLabels labels.Labels
	// Custom are more float series with exactly these labels; series i has
	// the values of FloatValue(Seed, i, t).
	Custom []labels.Labels
	// Seed varies sample values between blocks.
	Seed int64
}

// FloatValue is the value of float series i at time t, so tests can compute
// expected answers without reading the block.
func FloatValue(seed int64, i int, t int64) float64 {
	// A counter-like series: monotonically increasing, different per series.
	return float64(seed%97) + float64(i+1)*float64(t/1000)/60 + float64(i%7)
}

// SeriesLabels returns the labels of float series i of metric name.
func SeriesLabels(name string, i int, extra labels.Labels) labels.Labels {
	b := labels.NewBuilder(extra)
	b.Set(model.MetricNameLabel, name)
	b.Set("job", fmt.Sprintf("job-%d", i%4))
	b.Set("instance", fmt.Sprintf("instance-%04d", i))
	b.Set("zone", []string{"a", "b", "c"}[i%3])
	return b.Labels()
}

// Write writes a block described by s into dir and returns its ULID.
func Write(ctx context.Context, dir string, s Spec) (ulid.ULID, error) {
	if s.Step == 0 {
		s.Step = 15_000
	}
	if len(s.Metrics) == 0 {
		s.Metrics = []string{"test_metric"}
	}
	if s.MaxTime <= s.MinTime {
		return ulid.ULID{}, fmt.Errorf("block spec: MaxTime %d not after MinTime %d", s.MaxTime, s.MinTime)
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	w, err := tsdb.NewBlockWriter(logger, dir, max(s.MaxTime-s.MinTime, 2*time.Hour.Milliseconds()))
	if err != nil {
		return ulid.ULID{}, fmt.Errorf("new block writer: %w", err)
	}
	defer func() { _ = w.Close() }()
	app := w.Appender(ctx)
	for _, name := range s.Metrics {
		for i := 0; i < s.Series; i++ {
			lset := SeriesLabels(name, i, s.ExtraLabels)
			for t := s.MinTime; t < s.MaxTime; t += s.Step {
				if _, err := app.Append(0, lset, t, FloatValue(s.Seed, i, t)); err != nil {
					return ulid.ULID{}, fmt.Errorf("append %s: %w", lset, err)
				}
			}
		}
	}
	for i, lset := range s.Custom {
		for t := s.MinTime; t < s.MaxTime; t += s.Step {
			if _, err := app.Append(0, lset, t, FloatValue(s.Seed, i, t)); err != nil {
				return ulid.ULID{}, fmt.Errorf("append %s: %w", lset, err)
			}
		}
	}
	for i := 0; i < s.HistogramSeries; i++ {
		lset := SeriesLabels("test_histogram", i, s.ExtraLabels)
		n := int64(0)
		for t := s.MinTime; t < s.MaxTime; t += s.Step {
			if _, err := app.AppendHistogram(0, lset, t, HistogramValue(s.Seed+int64(i), n), nil); err != nil {
				return ulid.ULID{}, fmt.Errorf("append histogram %s: %w", lset, err)
			}
			n++
		}
	}
	if err := app.Commit(); err != nil {
		return ulid.ULID{}, fmt.Errorf("commit samples: %w", err)
	}
	id, err := w.Flush(ctx)
	if err != nil {
		return ulid.ULID{}, fmt.Errorf("flush block: %w", err)
	}
	return id, nil
}

// HistogramValue is the n-th sample of a native histogram series.
func HistogramValue(seed, n int64) *histogram.Histogram {
	return tsdbutil.GenerateTestHistogram(n + seed%5)
}

// SetThanosMeta adds the Thanos section to the meta.json of block id in dir, as
// an uploader would, listing the block's files.
func SetThanosMeta(dir string, id ulid.ULID, extLabels map[string]string, source block.SourceType) (*block.Meta, error) {
	bdir := filepath.Join(dir, id.String())
	m, err := block.ReadMetaFromDir(bdir)
	if err != nil {
		return nil, err
	}
	m.Thanos = block.Thanos{Version: block.ThanosVersion1, Labels: extLabels, Source: source}
	err = filepath.Walk(bdir, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(bdir, p)
		rel = filepath.ToSlash(rel)
		if rel == block.MetaFilename || rel == "tombstones" {
			return nil
		}
		m.Thanos.Files = append(m.Thanos.Files, block.File{RelPath: rel, SizeBytes: info.Size()})
		if filepath.Dir(rel) == block.ChunksDirname {
			m.Thanos.SegmentFiles = append(m.Thanos.SegmentFiles, filepath.Base(rel))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list block files: %w", err)
	}
	m.Thanos.Files = append(m.Thanos.Files, block.File{RelPath: block.MetaFilename})
	if err := m.WriteToDir(bdir); err != nil {
		return nil, err
	}
	return m, nil
}

// Upload copies block id from dir into bkt in the Thanos layout, meta.json last.
func Upload(ctx context.Context, bkt objstore.Bucket, dir string, id ulid.ULID) error {
	bdir := filepath.Join(dir, id.String())
	var metaPath string
	err := filepath.Walk(bdir, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(bdir, p)
		rel = filepath.ToSlash(rel)
		if rel == block.MetaFilename {
			metaPath = p
			return nil
		}
		return uploadFile(ctx, bkt, p, id.String()+"/"+rel)
	})
	if err != nil {
		return fmt.Errorf("upload block %s: %w", id, err)
	}
	if metaPath == "" {
		return fmt.Errorf("upload block %s: no meta.json", id)
	}
	return uploadFile(ctx, bkt, metaPath, block.MetaObject(id))
}

func uploadFile(ctx context.Context, bkt objstore.Bucket, src, dst string) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }()
	if err := bkt.Upload(ctx, dst, f); err != nil {
		return fmt.Errorf("upload %s: %w", dst, err)
	}
	return nil
}
