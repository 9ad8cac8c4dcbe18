package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestProfilingFlags runs smxd with --cpuprofile and finds a gzipped
// profile (what go tool pprof reads) after it stops; --pprof refuses an
// address that is not loopback.
func TestProfilingFlags(t *testing.T) {
	file, _, _ := testConfig(t)
	prof := filepath.Join(t.TempDir(), "cpu.prof")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, _, err := execute(t, ctx, "run", "-f", file, "--allow-root", "--cpuprofile", prof)
	require.NoError(t, err)
	b, err := os.ReadFile(prof)
	require.NoError(t, err)
	require.Greater(t, len(b), 2)
	require.Equal(t, []byte{0x1f, 0x8b}, b[:2], "a gzipped protobuf profile")

	for _, addr := range []string{"192.0.2.1:6060", "0.0.0.0:6060", ":6060", "localhost"} {
		_, _, err = execute(t, context.Background(), "run", "-f", file, "--allow-root", "--pprof", addr)
		require.ErrorContains(t, err, "expected a loopback address", addr)
	}
}

// TestPprofListener serves the pprof handlers on loopback until stopped.
func TestPprofListener(t *testing.T) {
	p, err := startProfiling("", "127.0.0.1:0", slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	resp, err := http.Get("http://" + p.addr.String() + "/debug/pprof/goroutine?debug=1")
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, string(body), "goroutine profile:")
	addr := p.addr.String()
	require.NoError(t, p.stop())
	_, err = http.Get("http://" + addr + "/debug/pprof/")
	require.Error(t, err, "the listener is closed")
}
