package content

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// docScanScript returns the Python script of docs/content.md ("By hand")
// that lists the records of a store without smx.
func docScanScript(t *testing.T) string {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join("..", "docs", "content.md"))
	require.NoError(t, err)
	_, rest, ok := strings.Cut(string(doc), "**By hand**")
	require.True(t, ok, "docs/content.md has no \"By hand\" section")
	_, rest, ok = strings.Cut(rest, "```python\n")
	require.True(t, ok, "no python block after \"By hand\"")
	script, _, ok := strings.Cut(rest, "```")
	require.True(t, ok)
	return script
}

// scriptRecord is one line of the script's output.
type scriptRecord struct {
	state        string
	offset, size int64
	segment      string
	txn          string
}

var scriptLine = regexp.MustCompile(`^([0-9a-f]{16})-([0-9a-f]+)-([0-9a-f]{8}) (live|released) kind=(\d) offset=(\d+) body=(\d+) ss_ta=(\S+) from=<(\S*)> to=(.*)$`)

// TestDocScanScriptReadsTheStore runs the Python script of docs/content.md
// on a store, while it is open (the segment receiving bodies has no footer
// yet) and after it is closed, and checks what it prints against what the
// store holds: every body with its reference, state, ss_ta and sender, and
// offsets and lengths from which dd extracts the exact body.
func TestDocScanScriptReadsTheStore(t *testing.T) {
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not installed")
	}
	script := filepath.Join(t.TempDir(), "cdbscan.py")
	require.NoError(t, os.WriteFile(script, []byte(docScanScript(t)), 0o644))

	dir := t.TempDir()
	opts := testOptions()
	s := openStore(t, dir, opts)
	sizes := []int{0, 100, 5000, opts.InlineLimit + 1000, 7000}
	bodies := map[string][]byte{}
	txns := map[string]string{}
	var refs []string
	for i, n := range sizes {
		txn := fmt.Sprintf("S%016X00", i+1)
		b := body(uint64(i), n)
		ref := put(t, s, txn, b)
		bodies[ref], txns[ref] = b, txn
		refs = append(refs, ref)
	}
	released := refs[1]
	require.NoError(t, s.Release(released))

	check := func(when string) {
		t.Helper()
		out, err := exec.Command(python, script, dir).CombinedOutput()
		require.NoError(t, err, "%s: %s", when, out)
		seen := map[string]scriptRecord{}
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			m := scriptLine.FindStringSubmatch(line)
			require.NotNil(t, m, "%s: unexpected line %q", when, line)
			ref := m[1] + "-" + m[2] + "-" + m[3]
			offset, _ := strconv.ParseInt(m[6], 10, 64)
			size, _ := strconv.ParseInt(m[7], 10, 64)
			seen[ref] = scriptRecord{state: m[4], offset: offset, size: size, segment: m[1], txn: m[8]}
			require.Equal(t, "sender@example.org", m[9])
			require.Equal(t, "<rcpta@example.net>,<rcptb@example.net>", m[10])
		}
		require.Len(t, seen, len(refs), "%s: %s", when, out)
		for _, ref := range refs {
			r, ok := seen[ref]
			require.True(t, ok, "%s: %s not listed", when, ref)
			want := "live"
			if ref == released {
				want = "released"
			}
			require.Equal(t, want, r.state, "%s: %s", when, ref)
			require.Equal(t, txns[ref], r.txn)
			require.EqualValues(t, len(bodies[ref]), r.size)
			// dd if=SEGMENT.seg bs=1 skip=$((OFFSET + 64)) count=BODYLEN
			seg, err := os.ReadFile(filepath.Join(dir, r.segment+".seg"))
			require.NoError(t, err)
			require.True(t, bytes.Equal(bodies[ref], seg[r.offset+64:r.offset+64+r.size]), "%s: body of %s", when, ref)
		}
	}
	check("open")
	require.NoError(t, s.Close())
	check("closed")
}
