package content

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func FuzzParseRef(f *testing.F) {
	f.Add("000660c93a3953d4-40-4f767832")
	f.Add("000660c93a3953d4-b530-00000000")
	f.Add("ffffffffffffffff-ffffffffffffffff-ffffffff")
	f.Add("000660c93a3953d4-040-4f767832")
	f.Add("000660C93A3953D4-40-4f767832")
	f.Add("--")
	f.Add("")
	f.Fuzz(func(t *testing.T, ref string) {
		k, check, err := parseRef(ref)
		if err != nil {
			return
		}
		if got := formatRef(k, check); got != ref {
			t.Fatalf("parseRef(%q) then formatRef gives %q", ref, got)
		}
	})
}

func FuzzDecodeEnvelope(f *testing.F) {
	env := testEnvelope("S0000000000000123400", 3)
	b, err := appendEnvelope(nil, &env)
	require.NoError(f, err)
	f.Add(b)
	f.Add(b[:len(b)/2])
	f.Add([]byte{0x80})
	f.Add([]byte{0xdf, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		env, err := decodeEnvelope(b)
		if err != nil {
			return
		}
		// What decodes encodes again and decodes to the same.
		again, err := appendEnvelope(nil, &env)
		require.NoError(t, err)
		env2, err := decodeEnvelope(again)
		require.NoError(t, err)
		require.Equal(t, env, env2)
	})
}

// FuzzOpenSegment hands Open a segment file and a release file with
// arbitrary contents, as a crash or a damaged disk may leave them. Open
// either refuses with an error or recovers, and then every body it reports
// is either served intact or reported damaged; nothing panics or hangs.
func FuzzOpenSegment(f *testing.F) {
	const id = 0x0006000000000001
	sealed, unsealed, rel := fuzzSeeds(f, id)
	f.Add(sealed, rel)
	f.Add(sealed, []byte(nil))
	f.Add(unsealed, []byte(nil))
	f.Add(unsealed[:len(unsealed)-7], rel[:len(rel)-5])
	f.Add(sealed[:fileHeaderSize], []byte(nil))
	f.Add(sealed[:fileHeaderSize+recordHeaderSize+3], []byte(nil))
	f.Add([]byte("SMXCDB\r\n"), []byte("x"))
	f.Fuzz(func(t *testing.T, seg, rel []byte) {
		dir := t.TempDir()
		require.NoError(t, os.WriteFile(filepath.Join(dir, segmentName(id)), seg, 0o640))
		if rel != nil {
			require.NoError(t, os.WriteFile(filepath.Join(dir, releaseName(id)), rel, 0o640))
		}
		opts := testOptions()
		opts.Now = func() time.Time { return time.Unix(0, id*1000+5000) }
		// A reader beside smxd sees the files as they are, before any
		// recovery: it must cope the same way.
		if ro, err := OpenReadOnly(dir, opts); err == nil {
			readEvery(t, ro)
			require.NoError(t, ro.Close())
		}
		s, err := Open(dir, opts)
		if err != nil {
			return
		}
		defer s.Close()
		var refs []string
		require.NoError(t, s.Scan(context.Background(), func(b Body) error {
			refs = append(refs, b.Ref)
			return nil
		}))
		for _, ref := range refs {
			r, err := s.Open(ref)
			if err == nil {
				_, err = io.Copy(io.Discard, r)
				r.Close()
			}
			_ = err
			_ = s.Release(ref)
		}
		ref := put(t, s, "SAFTER", body(1, 100))
		requireBody(t, s, ref, body(1, 100))
	})
}

// readEvery reads every body a read-only store lists, which must either
// be served or reported; nothing may panic or hang.
func readEvery(t *testing.T, ro *Store) {
	var refs []string
	require.NoError(t, ro.Scan(context.Background(), func(b Body) error {
		refs = append(refs, b.Ref)
		return nil
	}))
	for _, ref := range refs {
		ro.Exists(ref)
		if r, err := ro.Open(ref); err == nil {
			_, _ = io.Copy(io.Discard, r)
			r.Close()
		}
	}
}

// fuzzSeeds builds a sealed segment with release marks and an unsealed
// one, as files, for the seed corpus.
func fuzzSeeds(f *testing.F, id uint64) (sealed, unsealed, rel []byte) {
	dir := f.TempDir()
	opts := testOptions()
	opts.Now = func() time.Time { return time.UnixMicro(int64(id)) }
	s, err := Open(dir, opts)
	require.NoError(f, err)
	var refs []string
	for i, n := range []int{0, 10, 300, 2 * opts.InlineLimit / 3} {
		refs = append(refs, put(f, s, "S1", body(uint64(i), n)))
	}
	require.Equal(f, id, refKey(f, refs[0]).seg)
	unsealed, err = os.ReadFile(filepath.Join(dir, segmentName(id)))
	require.NoError(f, err)
	require.NoError(f, s.Release(refs[1]))
	require.NoError(f, s.Close())
	sealed, err = os.ReadFile(filepath.Join(dir, segmentName(id)))
	require.NoError(f, err)
	rel, err = os.ReadFile(filepath.Join(dir, releaseName(id)))
	require.NoError(f, err)
	return sealed, unsealed, rel
}
