package maps

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

const millionEntries = 1_000_000

var (
	millionOnce sync.Once
	millionPath string
	millionMap  *Hash
	millionErr  error
)

// millionAccessMap writes and loads an access map of a million entries of
// the kinds a big site has: to: addresses, from: domains and cltaddr:
// nets.
func millionAccessMap(b *testing.B) *Hash {
	millionOnce.Do(func() {
		dir, err := os.MkdirTemp("", "smx-maps-bench")
		if err != nil {
			millionErr = err
			return
		}
		millionPath = filepath.Join(dir, "access")
		var sb strings.Builder
		for i := 0; i < millionEntries; i++ {
			switch i % 3 {
			case 0:
				fmt.Fprintf(&sb, "to:user%d@domain%d.example relay\n", i, i%5000)
			case 1:
				fmt.Fprintf(&sb, "from:@spam%d.example error:551 5.7.1 No spammers\n", i)
			default:
				fmt.Fprintf(&sb, "cltaddr:10.%d.%d.%d ok\n", i>>16&255, i>>8&255, i&255)
			}
		}
		if millionErr = os.WriteFile(millionPath, []byte(sb.String()), 0o644); millionErr != nil {
			return
		}
		millionMap, millionErr = OpenHash("access", millionPath, FormatPlain, nil)
	})
	if millionErr != nil {
		b.Fatal(millionErr)
	}
	return millionMap
}

func TestMain(m *testing.M) {
	code := m.Run()
	if millionPath != "" {
		os.RemoveAll(filepath.Dir(millionPath))
	}
	os.Exit(code)
}

// BenchmarkAccessMapLookup measures single-key lookups in a million-entry
// access map.
func BenchmarkAccessMapLookup(b *testing.B) {
	m := millionAccessMap(b)
	ctx := context.Background()
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = fmt.Sprintf("to:user%d@domain%d.example", i*3*97, i*3*97%5000)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, found, _ := m.Lookup(ctx, keys[i&1023]); !found {
				b.Fatal("not found")
			}
			i++
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lookups/s")
}

// BenchmarkAccessMapAddressOrder measures a whole to: lookup order (up to a
// dozen keys for user+detail@sub.domain) against the million-entry map, the
// work of one RCPT check.
func BenchmarkAccessMapAddressOrder(b *testing.B) {
	m := millionAccessMap(b)
	ctx := context.Background()
	a, err := ParseAddress("nobody+tag@host.domain42.example")
	if err != nil {
		b.Fatal(err)
	}
	order := Order{Flags: GenericAddress | LocalPart, Tag: "to:"}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			view := View(m)
			if _, found, _ := Find(ctx, view, "", order.AddressKeys(a), nil); found {
				b.Fatal("found")
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "orders/s")
}

// BenchmarkHashReloadMillion measures reading and swapping in the
// million-entry map file: the cost of a reload.
func BenchmarkHashReloadMillion(b *testing.B) {
	m := millionAccessMap(b)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := m.Reload(); err != nil {
			b.Fatal(err)
		}
	}
}
