package testserver

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/go-kit/log"
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/thanos-io/objstore"
	"github.com/thanos-io/objstore/client"
)

// MinIO is a real MinIO server with its data in the test's temp dir.
type MinIO struct {
	Endpoint  string // host:port, as objstore's S3 config wants it
	AccessKey string
	SecretKey string

	t       testing.TB
	dataDir string
	port    int
	proc    *Process
}

// StartMinIO starts a MinIO server and waits until it is live.
func StartMinIO(t testing.TB) *MinIO {
	t.Helper()
	m := &MinIO{
		t:         t,
		port:      FreePort(t),
		dataDir:   t.TempDir(),
		AccessKey: "stevedore",
		SecretKey: "stevedore-secret-key",
	}
	m.Endpoint = Addr(m.port)
	m.Start()
	return m
}

// Start (re)starts the server on the same port and data, e.g. after Stop to
// simulate an outage.
func (m *MinIO) Start() {
	m.t.Helper()
	m.proc = Start(m.t, "minio", Binary(m.t, EnvMinIO),
		[]string{"server", m.dataDir, "--address", m.Endpoint, "--console-address", Addr(FreePort(m.t)), "--quiet"},
		"MINIO_ROOT_USER="+m.AccessKey, "MINIO_ROOT_PASSWORD="+m.SecretKey,
		"MINIO_BROWSER=off", "MINIO_UPDATE=off", "MINIO_CI_CD=1")
	m.proc.WaitHTTP(m.t, "http://"+m.Endpoint+"/minio/health/ready", 60*time.Second)
}

// Stop stops the server; its data stays for a later Start.
func (m *MinIO) Stop() { m.proc.Stop() }

// Process is the running server process.
func (m *MinIO) Process() *Process { return m.proc }

// CreateBucket makes a bucket (objstore itself never creates buckets).
func (m *MinIO) CreateBucket(t testing.TB, name string) {
	t.Helper()
	c, err := minio.New(m.Endpoint, &minio.Options{Creds: credentials.NewStaticV4(m.AccessKey, m.SecretKey, "")})
	if err != nil {
		t.Fatalf("minio client: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.MakeBucket(ctx, name, minio.MakeBucketOptions{}); err != nil {
		t.Fatalf("create bucket %s: %v", name, err)
	}
}

// ObjstoreConfig is the Thanos objstore YAML for bucket on this server.
func (m *MinIO) ObjstoreConfig(bucket string) []byte {
	return fmt.Appendf(nil, `type: S3
config:
  bucket: %q
  endpoint: %q
  access_key: %q
  secret_key: %q
  insecure: true
`, bucket, m.Endpoint, m.AccessKey, m.SecretKey)
}

// Bucket creates bucket name and returns an objstore client for it.
func (m *MinIO) Bucket(t testing.TB, name string) objstore.Bucket {
	t.Helper()
	m.CreateBucket(t, name)
	return m.Client(t, name)
}

// Client returns an objstore client for an existing bucket.
func (m *MinIO) Client(t testing.TB, name string) objstore.Bucket {
	t.Helper()
	bkt, err := client.NewBucket(log.NewNopLogger(), m.ObjstoreConfig(name), "test", nil)
	if err != nil {
		t.Fatalf("objstore client for %s: %v", name, err)
	}
	t.Cleanup(func() { _ = bkt.Close() })
	return bkt
}
