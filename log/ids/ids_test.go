package ids

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestSeedExamples(t *testing.T) {
	// The examples of seed 001 "Format of Session/Transaction Identifiers"
	// and its log examples.
	s, err := ParseServer("S00000000407CE49200")
	require.NoError(t, err)
	require.Equal(t, Server{Counter: 0x407CE492, Process: 0}, s)
	require.Equal(t, "S00000000407CE49200", s.String())

	c, err := ParseClient("C010000137D00000000")
	require.NoError(t, err)
	require.Equal(t, Client{Process: 1, Counter: 0x137D, Thread: 0}, c)
	require.Equal(t, "C010000137D00000000", c.String())

	c, err = ParseClient("C01000006C800000002")
	require.NoError(t, err)
	require.Equal(t, Client{Process: 1, Counter: 0x6C8, Thread: 2}, c)
}

func TestFormat(t *testing.T) {
	require.Equal(t, "SFFFFFFFFFFFFFFFFFF", Server{Counter: ^uint64(0), Process: 0xFF}.String())
	require.Equal(t, "S0000000000000001AB", Server{Counter: 1, Process: 0xAB}.String())
	require.Equal(t, "CFFFFFFFFFFFFFFFFFF", Client{Process: 0xFF, Counter: ^uint32(0), Thread: ^uint32(0)}.String())
	b, err := Server{Counter: 7, Process: 3}.MarshalText()
	require.NoError(t, err)
	var s Server
	require.NoError(t, s.UnmarshalText(b))
	require.Equal(t, Server{Counter: 7, Process: 3}, s)
	// Lower-case hex digits are accepted, the prefix is not.
	s, err = ParseServer("S00000000407ce49200")
	require.NoError(t, err)
	require.Equal(t, uint64(0x407CE492), s.Counter)
}

func TestParseErrors(t *testing.T) {
	for _, in := range []string{"", "S", "s00000000407CE49200", "S00000000407CE4920", "S00000000407CE492000",
		"S00000000407CE4920G", "C010000137D00000000", "X00000000407CE49200", "S+0000000407CE49200"} {
		_, err := ParseServer(in)
		require.ErrorIs(t, err, ErrSyntax, in)
	}
	for _, in := range []string{"", "C", "c010000137D00000000", "C010000137D0000000", "C010000137D0000000Z", "S00000000407CE49200"} {
		_, err := ParseClient(in)
		require.ErrorIs(t, err, ErrSyntax, in)
	}
}

func fixedClock(sec int64) func() time.Time {
	return func() time.Time { return time.Unix(sec, 0) }
}

func TestSequenceStartsAtUnixTime(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	seq, err := OpenServerSequence(path, SequenceOptions{Now: fixedClock(0x407CE492)})
	require.NoError(t, err)
	id, err := seq.Next(0)
	require.NoError(t, err)
	require.Equal(t, "S00000000407CE49200", id.String())
	// The block is on disk before the id was handed out.
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, "00000000407DE492\n", string(data))
}

func TestSequenceNeverRepeatsAcrossRestarts(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	// The clock stands still (or goes back): the file alone must prevent
	// repeats, including when the process "crashes" without any shutdown.
	clock := fixedClock(1000)
	seen := map[uint64]bool{}
	for run := 0; run < 5; run++ {
		seq, err := OpenServerSequence(path, SequenceOptions{BlockSize: 7, Now: clock})
		require.NoError(t, err)
		for i := 0; i < 20; i++ { // crosses several blocks
			id, err := seq.Next(uint8(run))
			require.NoError(t, err)
			require.False(t, seen[id.Counter], "counter %d repeated in run %d", id.Counter, run)
			seen[id.Counter] = true
			require.GreaterOrEqual(t, id.Counter, uint64(1000))
		}
		clock = fixedClock(999) // the machine's clock went back
	}
}

func TestSequenceFollowsClockForward(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	seq, err := OpenServerSequence(path, SequenceOptions{Now: fixedClock(1000)})
	require.NoError(t, err)
	_, err = seq.Next(0)
	require.NoError(t, err)
	seq, err = OpenServerSequence(path, SequenceOptions{Now: fixedClock(5_000_000)})
	require.NoError(t, err)
	id, err := seq.Generator(9).Next()
	require.NoError(t, err)
	require.Equal(t, Server{Counter: 5_000_000, Process: 9}, id)
}

func TestSequenceConcurrent(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	seq, err := OpenServerSequence(path, SequenceOptions{BlockSize: 64, Now: fixedClock(1)})
	require.NoError(t, err)
	const workers, per = 8, 500
	results := make([][]uint64, workers)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < per; i++ {
				id, err := seq.Next(0)
				if err != nil {
					t.Error(err)
					return
				}
				results[w] = append(results[w], id.Counter)
			}
		}(w)
	}
	wg.Wait()
	seen := map[uint64]bool{}
	for _, r := range results {
		for _, c := range r {
			require.False(t, seen[c], "counter %d handed out twice", c)
			seen[c] = true
		}
	}
	require.Len(t, seen, workers*per)
	limit, err := readLimit(path)
	require.NoError(t, err)
	for c := range seen {
		require.Less(t, c, limit, "counter beyond the durable reservation")
	}
}

func TestSequenceCorruptFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	for _, content := range []string{"", "12\n", "00000000407DE492", "00000000407DE49Z\n"} {
		require.NoError(t, os.WriteFile(path, []byte(content), 0o644))
		_, err := OpenServerSequence(path, SequenceOptions{})
		require.Error(t, err)
		require.Contains(t, err.Error(), path)
		require.Contains(t, err.Error(), "corrupt")
	}
}

func TestSequenceUnwritableDirectory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing", FileName)
	_, err := OpenServerSequence(path, SequenceOptions{})
	require.Error(t, err)
	require.True(t, strings.HasPrefix(err.Error(), "ids: reserve"), err.Error())
}

func TestClientGenerator(t *testing.T) {
	g := NewClientGenerator(1, 0x6C7)
	require.Equal(t, "C01000006C800000002", g.Next(2).String())
	require.Equal(t, "C01000006C900000002", g.Next(2).String())
	require.Equal(t, Client{Process: 1, Counter: 0x6CA, Thread: 5}, g.Next(5))
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"S00000000407CE49200", "C010000137D00000000", "", "S", "Cxyz", "S00000000407ce49200"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if id, err := ParseServer(s); err == nil {
			if !strings.EqualFold(id.String(), s) {
				t.Fatalf("ParseServer(%q) = %v, which prints as %q", s, id, id.String())
			}
		}
		if id, err := ParseClient(s); err == nil {
			if !strings.EqualFold(id.String(), s) {
				t.Fatalf("ParseClient(%q) = %v, which prints as %q", s, id, id.String())
			}
		}
	})
}

func BenchmarkServerNext(b *testing.B) {
	seq, err := OpenServerSequence(filepath.Join(b.TempDir(), FileName), SequenceOptions{})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := seq.Next(0); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkServerNextAndAppend(b *testing.B) {
	seq, err := OpenServerSequence(filepath.Join(b.TempDir(), FileName), SequenceOptions{})
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 0, ServerLen)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		id, err := seq.Next(0)
		if err != nil {
			b.Fatal(err)
		}
		buf = id.Append(buf[:0])
	}
}

func BenchmarkServerString(b *testing.B) {
	id := Server{Counter: 0x407CE492, Process: 1}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		_ = id.String()
	}
}

func BenchmarkParseServer(b *testing.B) {
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := ParseServer("S00000000407CE49200"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkClientNext(b *testing.B) {
	g := NewClientGenerator(1, 0)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			_ = g.Next(0)
		}
	})
}
