package maps

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const millionEntries = 1_000_000

// millionAccessMap writes and loads an access map of a million entries of
// the kinds a big site has: to: addresses, from: domains and cltaddr:
// nets.
func millionAccessMap(b *testing.B) *Hash {
	path := filepath.Join(b.TempDir(), "access")
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
	if err := os.WriteFile(path, []byte(sb.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	m, err := OpenHash("access", path, FormatPlain, nil)
	if err != nil {
		b.Fatal(err)
	}
	return m
}

// BenchmarkAccessMap runs its sub-benchmarks on one million-entry access
// map, which takes a while to write and load.
func BenchmarkAccessMap(b *testing.B) {
	m := millionAccessMap(b)
	b.Run("lookup", func(b *testing.B) { benchLookup(b, m) })
	b.Run("address-order", func(b *testing.B) { benchAddressOrder(b, m) })
	b.Run("reload", func(b *testing.B) { benchReload(b, m) })
}

// benchLookup measures single-key lookups in a million-entry access map.
func benchLookup(b *testing.B, m *Hash) {
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

// benchAddressOrder measures a whole to: lookup order (up to a dozen keys
// for user+detail@sub.domain) against the million-entry map, the work of
// one RCPT check.
func benchAddressOrder(b *testing.B, m *Hash) {
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

// benchReload measures reading and swapping in the million-entry map file:
// the cost of a reload.
func benchReload(b *testing.B, m *Hash) {
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := m.Reload(); err != nil {
			b.Fatal(err)
		}
	}
}
