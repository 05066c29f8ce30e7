package testserver_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"

	"github.com/stevedore-dev/stevedore/internal/block"
	"github.com/stevedore-dev/stevedore/internal/testserver"
	"github.com/stevedore-dev/stevedore/internal/testutil/blockgen"
)

// TestPrometheusServesGeneratedBlocks proves the test data path: blocks
// written by blockgen are loaded by both real Prometheus versions, which
// answer with exactly the generated values.
func TestPrometheusServesGeneratedBlocks(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real Prometheus servers")
	}
	for _, tc := range []struct {
		name    string
		version testserver.PrometheusVersion
		prefix  string
	}{
		{"v3", testserver.Prometheus3, "3."},
		{"v2", testserver.Prometheus2, "2."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			end := time.Now().Add(-3 * time.Hour).Truncate(2 * time.Hour)
			start := end.Add(-2 * time.Hour)
			spec := blockgen.Spec{MinTime: start.UnixMilli(), MaxTime: end.UnixMilli(), Series: 10, HistogramSeries: 2, Seed: 3}
			if _, err := blockgen.Write(ctx, dir, spec); err != nil {
				t.Fatal(err)
			}
			p := testserver.StartPrometheus(t, testserver.PrometheusOptions{
				Version: tc.version, DataDir: dir, ExternalLabels: map[string]string{"cluster": "test"},
			})
			api := p.API(t)
			bi, err := api.Buildinfo(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(bi.Version, tc.prefix) {
				t.Errorf("version %q, want %s*", bi.Version, tc.prefix)
			}
			at := start.Add(time.Hour)
			val, _, _, err := api.Query(ctx, `test_metric{instance="instance-0003"}`, at)
			if err != nil {
				t.Fatal(err)
			}
			v := val.(model.Vector)
			if want := blockgen.FloatValue(3, 3, at.UnixMilli()); len(v) != 1 || float64(v[0].Value) != want {
				t.Fatalf("got %v, want one sample = %v", v, want)
			}
			val, _, _, err = api.Query(ctx, `count(test_histogram)`, at)
			if err != nil {
				t.Fatal(err)
			}
			if v := val.(model.Vector); len(v) != 1 || v[0].Value != 2 {
				t.Fatalf("count(test_histogram) = %v, want 2", v)
			}
		})
	}
}

// TestMinIOBucketAndBlockUpload proves the bucket path: a block uploaded to
// a real MinIO bucket reads back with its meta.json.
func TestMinIOBucketAndBlockUpload(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real MinIO")
	}
	ctx := context.Background()
	m := testserver.StartMinIO(t)
	bkt := m.Bucket(t, "blocks")
	dir := t.TempDir()
	id, err := blockgen.Write(ctx, dir, blockgen.Spec{MinTime: 0, MaxTime: 3600_000, Series: 5})
	if err != nil {
		t.Fatal(err)
	}
	meta, err := blockgen.SetThanosMeta(dir, id, map[string]string{"cluster": "a"}, block.SourceTest)
	if err != nil {
		t.Fatal(err)
	}
	if err := blockgen.Upload(ctx, bkt, dir, id); err != nil {
		t.Fatal(err)
	}
	rc, err := bkt.Get(ctx, block.MetaObject(id))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = rc.Close() }()
	got, err := block.ReadMeta(rc)
	if err != nil {
		t.Fatal(err)
	}
	if got.ULID != id || got.Thanos.Labels["cluster"] != "a" || got.Stats.NumSeries != 5 || len(got.Thanos.SegmentFiles) != len(meta.Thanos.SegmentFiles) {
		t.Fatalf("meta read back %+v, want %+v", got, meta)
	}
	for _, f := range meta.Thanos.Files {
		if f.RelPath == block.MetaFilename {
			continue
		}
		attrs, err := bkt.Attributes(ctx, id.String()+"/"+f.RelPath)
		if err != nil || attrs.Size != f.SizeBytes {
			t.Errorf("%s: attributes %+v (%v), want size %d", f.RelPath, attrs, err, f.SizeBytes)
		}
	}

	// Stopping and starting again keeps the data: tests use this for outages.
	m.Stop()
	m.Start()
	if ok, err := bkt.Exists(ctx, block.MetaObject(id)); err != nil || !ok {
		t.Fatalf("after restart: exists=%v err=%v", ok, err)
	}
}

// TestMemcached proves the memcached binary answers the text protocol.
func TestMemcached(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real memcached")
	}
	mc := testserver.StartMemcached(t)
	c, err := net.DialTimeout("tcp", mc.Addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(c, "set k 0 0 5\r\nhello\r\nget k\r\n"); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	for !bytes.Contains(buf.Bytes(), []byte("END\r\n")) {
		b := make([]byte, 256)
		n, err := c.Read(b)
		if err != nil && !errors.Is(err, io.EOF) {
			t.Fatalf("read: %v (have %q)", err, buf.String())
		}
		buf.Write(b[:n])
	}
	if want := "STORED\r\nVALUE k 0 5\r\nhello\r\nEND\r\n"; buf.String() != want {
		t.Fatalf("got %q, want %q", buf.String(), want)
	}
}
