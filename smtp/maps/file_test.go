package maps

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseFile(t *testing.T) {
	in := "# access map\r\n" +
		"To:Root   error:551 5.7.1 No mail to root  \n" +
		"\n" +
		"   # an indented comment\n" +
		"cltaddr:10\trelay\n" +
		"list1 <a@x.example>\n" +
		"\t<b@x.example>\n" +
		"   <c@x.example>\n" +
		"flag\n" +
		"hash#inkey value # not a comment\n"
	got, err := ParseFile(strings.NewReader(in), "access", FormatPlain)
	require.NoError(t, err)
	require.Equal(t, map[string]string{
		"to:root":    "error:551 5.7.1 No mail to root",
		"cltaddr:10": "relay",
		"list1":      "<a@x.example> <b@x.example> <c@x.example>",
		"flag":       "",
		"hash#inkey": "value # not a comment",
	}, got)
}

func TestParseFileAliases(t *testing.T) {
	in := "myalias: localuser\nmylist: <user1@my.dom> <user2@my.dom>\n  <user3@my.dom>\nOwner-MyList:someuser\nvuser1@virt1.tld: user1\n"
	got, err := ParseFile(strings.NewReader(in), "aliases", FormatAliases)
	require.NoError(t, err)
	require.Equal(t, map[string]string{
		"myalias":          "localuser",
		"mylist":           "<user1@my.dom> <user2@my.dom> <user3@my.dom>",
		"owner-mylist":     "someuser",
		"vuser1@virt1.tld": "user1",
	}, got)
}

func TestParseFileErrors(t *testing.T) {
	for _, tc := range []struct {
		in     string
		format Format
		want   string
	}{
		{" continued\n", FormatPlain, "f:1:1: continuation line without an entry before it"},
		{"a 1\nb 2\nA 3\n", FormatPlain, `f:3:1: duplicate key "a"`},
		{"a 1\nb\x00 2\n", FormatPlain, "f:2:2: NUL byte"},
		{"a 1\n\xff\n", FormatPlain, "f:2:1: invalid UTF-8"},
		{"noColon value\n", FormatAliases, "f:1:14: missing ':' after the key"},
		{"bad key: value\n", FormatAliases, "f:1:4: blank inside the key"},
		{": value\n", FormatAliases, "f:1:1: empty key"},
		{"k " + strings.Repeat("v", maxLine+1) + "\n", FormatPlain, "f:1:1: line longer than 1048576 bytes"},
	} {
		_, err := ParseFile(strings.NewReader(tc.in), "f", tc.format)
		var fe *FileError
		require.True(t, errors.As(err, &fe), "%q: %v", tc.in, err)
		require.Equal(t, tc.want, err.Error())
	}
}

func FuzzParseFile(f *testing.F) {
	f.Add("key value\n# comment\n\tcontinued\n", uint8(0))
	f.Add("alias: <a@b> <c@d>\n  <e@f>\r\n", uint8(1))
	f.Add("a 1\nA 2\n", uint8(0))
	f.Add(" x\n", uint8(1))
	f.Fuzz(func(t *testing.T, in string, format uint8) {
		entries, err := ParseFile(strings.NewReader(in), "fuzz", Format(format%2))
		if err != nil {
			var fe *FileError
			if !errors.As(err, &fe) || fe.Line < 1 || fe.Col < 1 {
				t.Fatalf("error without a position: %v", err)
			}
			return
		}
		for k, v := range entries {
			if k != Fold(k) {
				t.Fatalf("key %q not folded", k)
			}
			if strings.ContainsAny(v, "\n\r") {
				t.Fatalf("value %q contains a line break", v)
			}
		}
	})
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	// Write and rename so that a reload never reads a half-written file.
	tmp := path + ".tmp"
	require.NoError(t, os.WriteFile(tmp, []byte(content), 0o644))
	require.NoError(t, os.Rename(tmp, path))
}

func TestHashReloadKeepsOldOnError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access")
	writeFile(t, path, "a 1\n")
	h, err := OpenHash("access", path, FormatPlain, nil)
	require.NoError(t, err)
	ctx := context.Background()
	v, found, err := h.Lookup(ctx, "A")
	require.NoError(t, err)
	require.True(t, found)
	require.Equal(t, "1", v)

	writeFile(t, path, "a 2\n a continuation\nb 3\n")
	require.NoError(t, h.Reload())
	v, _, _ = h.Lookup(ctx, "a")
	require.Equal(t, "2 a continuation", v)

	writeFile(t, path, "a 4\na 5\n")
	err = h.Reload()
	require.ErrorContains(t, err, "duplicate key")
	v, _, _ = h.Lookup(ctx, "b")
	require.Equal(t, "3", v, "the old version stays after a failed reload")

	require.NoError(t, os.Remove(path))
	require.Error(t, h.Reload())
	require.Equal(t, 2, h.Len())
}

// TestHashReloadConcurrent reloads a map while lookups run. Every version
// of the file maps all keys to the same generation number, so a lookup
// order that sees a mix of versions is detected. Run it with -race.
func TestHashReloadConcurrent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m")
	version := func(gen int) string {
		var b strings.Builder
		for i := 0; i < 50; i++ {
			fmt.Fprintf(&b, "k%d %d\n", i, gen)
		}
		return b.String()
	}
	writeFile(t, path, version(0))
	h, err := OpenHash("m", path, FormatPlain, nil)
	require.NoError(t, err)

	const generations = 40
	done := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := context.Background()
			last := 0
			for {
				select {
				case <-done:
					return
				default:
				}
				view := View(h)
				var first string
				for i := 0; i < 50; i++ {
					v, found, err := view.Lookup(ctx, fmt.Sprintf("k%d", i))
					if err != nil || !found {
						errs <- fmt.Errorf("k%d: found=%v err=%v", i, found, err)
						return
					}
					if i == 0 {
						first = v
					} else if v != first {
						errs <- fmt.Errorf("mixed versions in one view: %s and %s", first, v)
						return
					}
				}
				var gen int
				fmt.Sscan(first, &gen)
				if gen < last {
					errs <- fmt.Errorf("went back from generation %d to %d", last, gen)
					return
				}
				last = gen
			}
		}()
	}
	for gen := 1; gen <= generations; gen++ {
		if gen%5 == 0 {
			// A broken file in between: the reload fails, lookups go on.
			writeFile(t, path, "dup 1\ndup 2\n")
			require.Error(t, h.Reload())
		}
		writeFile(t, path, version(gen))
		require.NoError(t, h.Reload())
	}
	close(done)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	v, _, _ := h.Lookup(context.Background(), "k49")
	require.Equal(t, fmt.Sprint(generations), v)
}

func TestPasswd(t *testing.T) {
	path := filepath.Join(t.TempDir(), "passwd")
	writeFile(t, path, "root:x:0:0:root:/root:/bin/bash\n"+
		"# comment\n+nisuser::0:0:::\n"+
		"Alice:x:1000:1000:Alice A,,,:/home/alice:/bin/sh\n"+
		"alice:x:1001:1001::/home/alice2:/bin/sh\n")
	p, err := OpenPasswd("password", path)
	require.NoError(t, err)
	ctx := context.Background()
	v, found, err := p.Lookup(ctx, "ALICE")
	require.NoError(t, err)
	require.True(t, found)
	require.Equal(t, "Alice:1000:1000:Alice A,,,:/home/alice:/bin/sh", v)
	_, found, _ = p.Lookup(ctx, "nisuser")
	require.False(t, found)

	writeFile(t, path, "broken:line\n")
	var fe *FileError
	require.ErrorAs(t, p.Reload(), &fe)
	require.Equal(t, 1, fe.Line)
	_, found, _ = p.Lookup(ctx, "root")
	require.True(t, found, "old passwd data kept")
}

func TestSequenceAndSet(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "local"), "alice a-local\n")
	writeFile(t, filepath.Join(dir, "other"), "alice a-other\nbob b-other\n")
	writeFile(t, filepath.Join(dir, "passwd"), "carol:x:1:1::/home/carol:/bin/sh\n")
	set, err := Open([]Spec{
		{Name: "localusers", Type: TypeHash, File: filepath.Join(dir, "local")},
		{Name: "otherusers", Type: TypeHash, File: filepath.Join(dir, "other")},
		{Name: "password", Type: TypePasswd, File: filepath.Join(dir, "passwd")},
		{Name: "seq1", Type: TypeSequence, Maps: []string{"localusers", "otherusers"}},
		{Name: "seq2", Type: TypeSequence, Maps: []string{"password", "otherusers"}},
	})
	require.NoError(t, err)
	defer set.Close()
	ctx := context.Background()
	seq1, _ := set.Get("seq1")
	v, _, _ := seq1.Lookup(ctx, "alice")
	require.Equal(t, "a-local", v)
	v, _, _ = seq1.Lookup(ctx, "bob")
	require.Equal(t, "b-other", v)
	seq2, _ := set.Get("seq2")
	v, found, _ := seq2.Lookup(ctx, "carol")
	require.True(t, found)
	require.Equal(t, "carol:1:1::/home/carol:/bin/sh", v)
	require.Equal(t, []string{"localusers", "otherusers", "password", "seq1", "seq2"}, set.Names())

	writeFile(t, filepath.Join(dir, "local"), "alice new\n")
	writeFile(t, filepath.Join(dir, "other"), " broken\n")
	err = set.Reload()
	require.ErrorContains(t, err, "reload otherusers")
	v, _, _ = seq1.Lookup(ctx, "alice")
	require.Equal(t, "new", v, "a good map reloads even when another fails")
	v, _, _ = seq1.Lookup(ctx, "bob")
	require.Equal(t, "b-other", v)

	_, err = Open([]Spec{{Name: "s", Type: TypeSequence, Maps: []string{"later"}}})
	require.ErrorContains(t, err, "not declared before")
	_, err = Open([]Spec{{Name: "x", Type: "btree"}})
	require.ErrorContains(t, err, "unknown type")
	_, err = Open([]Spec{{Name: "x", Type: TypeSocket, MapName: "m"}})
	require.ErrorContains(t, err, "needs path")
}

type failingMap struct{ temporary bool }

func (f failingMap) Lookup(context.Context, string) (string, bool, error) {
	return "", false, &LookupError{Map: "f", Temporary: f.temporary, Err: errors.New("down")}
}

func TestSequenceErrors(t *testing.T) {
	ctx := context.Background()
	good := NewStatic("good", map[string]string{"k": "v"})
	seq := NewSequence("s", failingMap{true}, good)
	v, found, err := seq.Lookup(ctx, "k")
	require.NoError(t, err, "a later map that has the key answers")
	require.True(t, found)
	require.Equal(t, "v", v)
	_, found, err = seq.Lookup(ctx, "missing")
	require.False(t, found)
	require.True(t, IsTemporary(err), "not found anywhere but one map failed: temporary")
	_, _, err = NewSequence("s", failingMap{false}).Lookup(ctx, "k")
	require.Error(t, err)
	require.False(t, IsTemporary(err))
}

func TestHashValidate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mt")
	writeFile(t, path, "good.example esmtp:[127.0.0.1]\n")
	check := func(entries map[string]string) error {
		for k, v := range entries {
			if strings.HasPrefix(v, "bad") {
				return fmt.Errorf("entry %q: bad right-hand side", k)
			}
		}
		return nil
	}
	h, err := OpenHash("mailertable", path, FormatPlain, check)
	require.NoError(t, err)
	writeFile(t, path, "good.example bad\n")
	require.EqualError(t, h.Reload(), path+`: entry "good.example": bad right-hand side`)
	v, _, _ := h.Lookup(context.Background(), "good.example")
	require.Equal(t, "esmtp:[127.0.0.1]", v, "a version the check refuses is not used")
	_, err = Open([]Spec{{Name: "mt", Type: TypeHash, File: path, Validate: check}})
	require.Error(t, err)
}

func FuzzParsePasswd(f *testing.F) {
	f.Add("root:x:0:0:root:/root:/bin/bash\n+nis::::::\n# c\n")
	f.Add("a:b\n")
	f.Add("::::::\n")
	f.Fuzz(func(t *testing.T, in string) {
		entries, err := ParsePasswd(strings.NewReader(in), "passwd")
		if err != nil {
			var fe *FileError
			if !errors.As(err, &fe) {
				t.Fatalf("error without a position: %v", err)
			}
			return
		}
		for k, v := range entries {
			if k == "" || k != Fold(k) || strings.Count(v, ":") != 5 {
				t.Fatalf("bad entry %q -> %q", k, v)
			}
		}
	})
}
