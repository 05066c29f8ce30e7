// Package testserver starts the real servers Stevedore's tests run against —
// MinIO, Prometheus (2.x and 3.x), memcached and Thanos (querier, store,
// tools) — on free loopback ports, waits until they are ready and stops them
// when the test ends.
//
// Binaries come from the environment that hack/testbin.sh prints
// (eval "$(hack/testbin.sh)"; `make test` does it). A missing binary fails the
// test with that instruction rather than skipping it, so a green run always
// means the real servers were exercised.
package testserver

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Environment variables naming the binaries.
const (
	EnvMinIO       = "STEVEDORE_MINIO"
	EnvPrometheus  = "STEVEDORE_PROMETHEUS"
	EnvPrometheus2 = "STEVEDORE_PROMETHEUS2"
	EnvThanos      = "STEVEDORE_THANOS"
	EnvMemcached   = "STEVEDORE_MEMCACHED"
)

// Binary returns the path in environment variable env, failing the test when
// it is unset or not executable.
func Binary(t testing.TB, env string) string {
	t.Helper()
	p := os.Getenv(env)
	if p == "" {
		t.Fatalf("%s is not set: run the tests with `make test`, or first eval \"$(hack/testbin.sh)\" to provision the real servers", env)
	}
	if st, err := os.Stat(p); err != nil || st.IsDir() {
		t.Fatalf("%s=%s is not a binary (%v): re-run hack/testbin.sh", env, p, err)
	}
	return p
}

var portMu sync.Mutex
var handedOut = map[int]bool{}

// FreePort returns a loopback TCP port nobody listens on, never the same
// twice in one test binary.
func FreePort(t testing.TB) int {
	t.Helper()
	portMu.Lock()
	defer portMu.Unlock()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("find free port: %v", err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		_ = l.Close()
		if !handedOut[p] {
			handedOut[p] = true
			return p
		}
	}
	t.Fatal("find free port: no unused port after 100 tries")
	return 0
}

// Addr returns 127.0.0.1:port.
func Addr(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// Process is a server started by a test.
type Process struct {
	Name    string
	cmd     *exec.Cmd
	LogPath string
	done    chan struct{}
	err     error
}

// Start runs bin with args, logging into a file in the test's temp dir. The
// process is stopped (SIGTERM, then SIGKILL) when the test ends.
func Start(t testing.TB, name, bin string, args []string, env ...string) *Process {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatalf("create %s log: %v", name, err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.Env = append(os.Environ(), env...)
	// Own process group, so a test's Ctrl-C doesn't race the cleanup.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		t.Fatalf("start %s (%s): %v", name, bin, err)
	}
	p := &Process{Name: name, cmd: cmd, LogPath: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		_ = logf.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("%s log (%s):\n%s", name, logPath, p.LogTail(40))
		}
	})
	return p
}

// Stop terminates the process and waits for it (SIGKILL after 10 s).
func (p *Process) Stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// Kill sends SIGKILL and waits for the process to exit.
func (p *Process) Kill() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

// Exited reports whether the process has exited.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// LogTail returns the last n lines of the process's log.
func (p *Process) LogTail(n int) string {
	b, err := os.ReadFile(p.LogPath)
	if err != nil {
		return err.Error()
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// WaitHTTP waits until GET url answers 200, failing the test after timeout or
// as soon as the process exits.
func (p *Process) WaitHTTP(t testing.TB, url string, timeout time.Duration) {
	t.Helper()
	if err := p.waitHTTP(url, timeout); err != nil {
		t.Fatalf("%s: %v\nlog:\n%s", p.Name, err, p.LogTail(30))
	}
}

func (p *Process) waitHTTP(url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	var last string
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := client.Do(req)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		select {
		case <-p.done:
			return fmt.Errorf("exited before %s was ready: %w", url, p.err)
		case <-ctx.Done():
			return fmt.Errorf("%s not ready after %s: %s", url, timeout, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
