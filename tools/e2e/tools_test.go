package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestRelayBench runs the relay benchmark driver as `make relay-bench`
// does, small: tools/loadgen sends 300 messages of 5 KB over 10 sessions
// through a real smxd to tools/smtpsink, and every recipient of every
// acknowledged message arrives, once.
func TestRelayBench(t *testing.T) {
	t.Parallel()
	out, err := exec.Command(filepath.Join(bins.dir, "relaybench"), "-bin", bins.dir,
		"-messages", "300", "-sessions", "10", "-size", "5KB", "-timeout", "2m").CombinedOutput()
	require.NoError(t, err, string(out))
	text := string(out)
	require.Regexp(t, `(?m)^smtpsink: listening on 127\.0\.0\.1:\d+$`, text)
	require.Regexp(t, `(?m)^loadgen: messages=300 accepted=300 failed=0 recipients=300 bytes=\d+ sessions=10 `, text)
	require.Regexp(t, `(?m)^smtpsink: reached 300 recipients$`, text)
	require.Regexp(t, `(?m)^smtpsink: messages=\d+ recipients=300 bytes=\d+ distinct=300 duplicates=0 `, text)
	m := regexp.MustCompile(`(?m)^relaybench: messages=300 acknowledged=300 delivered=300 duplicates=0 lost=0 elapsed=\S+ relay_rate=\S+ dot_p50=(\S+)ms dot_p99=(\S+)ms$`).FindStringSubmatch(text)
	require.NotNil(t, m, text)
}

// TestRelayBenchTwoRecipients: with two recipients a message, smxd may
// deliver them in one transaction or two; either way each arrives once.
func TestRelayBenchTwoRecipients(t *testing.T) {
	t.Parallel()
	out, err := exec.Command(filepath.Join(bins.dir, "relaybench"), "-bin", bins.dir,
		"-messages", "100", "-sessions", "5", "-rcpts", "2", "-per-conn", "0", "-timeout", "2m").CombinedOutput()
	require.NoError(t, err, string(out))
	require.Regexp(t, `(?m)^relaybench: messages=100 acknowledged=100 delivered=200 duplicates=0 lost=0 `, string(out))
}

// TestRelayCompare runs the comparison of `make relay-compare`, small:
// the same load through a Postfix instance of relaybench's own
// (configuration and queue in a temporary directory, the system's Postfix
// untouched) and through smxd, with the ratio of their rates.
func TestRelayCompare(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("Postfix's master must be started as root")
	}
	postfix := postfixTool(t, "postfix")
	out, err := exec.Command(filepath.Join(bins.dir, "relaybench"), "-bin", bins.dir, "-postfix", postfix,
		"-mta", "postfix,smxd", "-rounds", "1", "-messages", "200", "-sessions", "10", "-timeout", "2m").CombinedOutput()
	require.NoError(t, err, string(out))
	text := string(out)
	require.Regexp(t, `(?m)^postfix: sent=200 deferred=0 bounced=0 warnings=0 fatal=0$`, text)
	for _, mta := range []string{"postfix", "smxd"} {
		require.Regexp(t, `(?m)^relaybench: round=1 mta=`+mta+` messages=200 acknowledged=200 delivered=200 duplicates=0 lost=0 `, text)
		require.Regexp(t, `(?m)^relaybench: mta=`+mta+` rounds=1 relay_rate=\S+ \(\S+\) dot_p50=\S+ \(\S+\) dot_p99=\S+ \(\S+\) lost=0 duplicates=0$`, text)
	}
	require.Regexp(t, `(?m)^relaybench: ratio smxd/postfix=\d+\.\d\d \(median rates; per round \d+\.\d\d\)$`, text)
}
