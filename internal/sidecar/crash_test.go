package sidecar_test

import (
	"context"
	"fmt"
	"math/rand"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/stevedore-dev/stevedore/internal/agentstatus"
	"github.com/stevedore-dev/stevedore/internal/testserver"
)

// buildAgent builds cmd/agent into the test's temp dir.
func buildAgent(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "agent")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/stevedore-dev/stevedore/cmd/agent")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/agent: %v\n%s", err, out)
	}
	return bin
}

var (
	// slog's logfmt puts the logger's own attributes between msg and block.
	uploadedRe = regexp.MustCompile(`msg="uploaded block" [^\n]*?block=(\w+)`)
	startedRe  = regexp.MustCompile(`msg="upload new block" [^\n]*?block=(\w+)`)
)

// countLog counts, per block, the log lines matching re in the given logs.
func countLog(t *testing.T, re *regexp.Regexp, logs []string) map[string]int {
	t.Helper()
	n := map[string]int{}
	for _, p := range logs {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range re.FindAllSubmatch(b, -1) {
			n[string(m[1])]++
		}
	}
	return n
}

// TestSIGKILLDuringUploads kills the agent (a real subprocess) at random
// moments while it uploads, restarts it, and checks that in the end every
// block is in the bucket exactly once and no block lacks its meta.json.
// allComplete reports whether the bucket holds n blocks, all complete.
func allComplete(state map[ulid.ULID]bool, n int) bool {
	complete := 0
	for _, ok := range state {
		if ok {
			complete++
		}
	}
	return complete == n && len(state) == n
}

func TestSIGKILLDuringUploads(t *testing.T) {
	skipShort(t)
	agent := buildAgent(t)
	mio := testserver.StartMinIO(t)
	bkt := mio.Bucket(t, "blocks")
	dir := t.TempDir()
	base := time.Now().Truncate(2 * time.Hour).Add(-48 * time.Hour)
	// Blocks big enough (~several hundred KiB) that uploads take a while.
	ids := genBlocks(t, dir, base, 12, 1200)
	// Start from the state a kill between objects leaves: one block with its
	// chunks and index but no meta.json. Random kills reach it only sometimes.
	leftover := ids[len(ids)-1]
	for _, rel := range []string{"chunks/000001", "index"} {
		f, err := os.Open(filepath.Join(dir, leftover.String(), filepath.FromSlash(rel)))
		if err != nil {
			t.Fatal(err)
		}
		err = bkt.Upload(context.Background(), leftover.String()+"/"+rel, f)
		_ = f.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	prom := testserver.StartPrometheus(t, testserver.PrometheusOptions{Version: testserver.Prometheus2, DataDir: dir, ExternalLabels: testExtLabels})
	objcfg := testserver.WriteFile(t, "objstore.yml", mio.ObjstoreConfig("blocks"))
	httpAddr := testserver.Addr(testserver.FreePort(t))
	args := []string{"sidecar",
		"--prometheus.url=" + prom.URL,
		"--tsdb.path=" + dir,
		"--objstore.config-file=" + objcfg,
		"--http-address=" + httpAddr,
		"--grpc-address=" + testserver.Addr(testserver.FreePort(t)),
		"--shipper.sync-interval=1s",
		"--shipper.upload-concurrency=2",
		"--hash-func=SHA256",
		"--log.level=debug",
	}
	rng := rand.New(rand.NewSource(42))
	// Each round kills one upload; keep rounds fewer than blocks so that
	// the final run still has work to finish. When kills land late, rounds
	// can upload several blocks each and leave nothing to interrupt: then
	// stop killing and let the final run check the result.
	var logs []string
	for round := range 10 {
		if allComplete(bucketState(t, bkt), len(ids)) {
			t.Logf("round %d: every block is complete already; no more uploads to kill", round)
			break
		}
		p := testserver.Start(t, fmt.Sprintf("agent-%d", round), agent, args)
		logs = append(logs, p.LogPath)
		// Kill at a random moment within ~100 ms of the first upload of this
		// run, the time a few block uploads to a local MinIO take: kills land
		// while hashing, between objects and between blocks.
		deadline := time.Now().Add(20 * time.Second)
		for len(countLog(t, startedRe, []string{p.LogPath})) == 0 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		if time.Now().After(deadline) {
			t.Fatalf("round %d: no upload started:\n%s", round, p.LogTail(20))
		}
		time.Sleep(time.Duration(rng.Intn(120_000)) * time.Microsecond)
		p.Kill()
		state := bucketState(t, bkt)
		complete, partial := 0, 0
		for _, ok := range state {
			if ok {
				complete++
			} else {
				partial++
			}
		}
		t.Logf("round %d: killed with %d complete and %d partial blocks in the bucket", round, complete, partial)
	}
	p := testserver.Start(t, "agent-final", agent, args)
	logs = append(logs, p.LogPath)
	waitUploaded(t, bkt, ids, 60*time.Second)
	checkShipperFile(t, dir, ids)

	uploaded := countLog(t, uploadedRe, logs)
	started := countLog(t, startedRe, logs)
	interrupted := 0
	for _, id := range ids {
		if uploaded[id.String()] > 1 {
			t.Errorf("block %s uploaded %d times", id, uploaded[id.String()])
		}
		interrupted += started[id.String()] - uploaded[id.String()]
	}
	t.Logf("%d uploads were interrupted by SIGKILL and redone", interrupted)
	if len(uploaded) == 0 || interrupted == 0 {
		t.Errorf("the test killed no upload midway (uploaded %v); it proves nothing", uploaded)
	}

	// The status API reports the result the operator reads.
	var st *agentstatus.Status
	if err := eventually(10*time.Second, func() error {
		var err error
		st, err = agentstatus.Fetch(context.Background(), http.DefaultClient, "http://"+httpAddr)
		if err == nil && (st.Sidecar == nil || st.Sidecar.Uploaded != int64(len(ids))) {
			err = fmt.Errorf("status %+v", st)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if st.Component != agentstatus.ComponentSidecar || !st.Ready || st.Sidecar.Pending != 0 || !st.Sidecar.PrometheusReachable ||
		st.Sidecar.ExternalLabels["cluster"] != "c1" || st.Sidecar.PrometheusVersion == "" {
		t.Errorf("status %+v sidecar %+v", st, st.Sidecar)
	}
	if _, err := os.Stat(filepath.Join(dir, "thanos", "upload")); err == nil {
		entries, _ := os.ReadDir(filepath.Join(dir, "thanos", "upload"))
		if len(entries) != 0 {
			t.Errorf("staging directory left behind: %v", entries)
		}
	}
}
