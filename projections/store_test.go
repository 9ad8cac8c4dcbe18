package projections

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// TestMessageStore checks the ss_ta index against a Go map through random
// inserts and removes, which with linear probing and backward-shift
// deletion is where the mistakes would be.
func TestMessageStore(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	s := newMessageStore(0)
	want := map[string]uint32{}
	var live []string
	for step := range 200_000 {
		if len(live) > 0 && rng.IntN(5) < 2 {
			i := rng.IntN(len(live))
			txn := live[i]
			live[i] = live[len(live)-1]
			live = live[:len(live)-1]
			s.remove(want[txn])
			delete(want, txn)
		} else {
			txn := fmt.Sprintf("S%x", rng.Uint64N(1<<40))
			if _, dup := want[txn]; dup {
				continue
			}
			slot := s.alloc()
			*s.at(slot) = message{strs: txn, txnEnd: uint32(len(txn))}
			s.insert(slot)
			want[txn] = slot
			live = append(live, txn)
		}
		if step%1000 == 0 {
			for txn, slot := range want {
				if got, ok := s.lookup(txn); !ok || got != slot {
					t.Fatalf("step %d: lookup %s = %d, %v; want %d", step, txn, got, ok, slot)
				}
			}
			if _, ok := s.lookup("absent"); ok {
				t.Fatalf("step %d: found an absent ss_ta", step)
			}
			n := 0
			s.slots(func(uint32) { n++ })
			if n != len(want) || s.count != len(want) {
				t.Fatalf("step %d: %d slots, count %d, want %d", step, n, s.count, len(want))
			}
		}
	}
}

// TestScanMatchesMessages checks that Scan visits what Messages and
// Recipients list, each message once, and stops when asked.
func TestScanMatchesMessages(t *testing.T) {
	q := New()
	applyAll(q, genStream(7, 2000))
	want := map[string]string{}
	for _, m := range q.Messages() {
		want[m.Txn] = fmt.Sprint(m, q.Recipients(m.Txn))
	}
	got := map[string]string{}
	q.Scan(func(m Message, rcpts []Recipient) bool {
		if _, dup := got[m.Txn]; dup {
			t.Fatalf("%s visited twice", m.Txn)
		}
		got[m.Txn] = fmt.Sprint(m, rcpts)
		return true
	})
	if len(want) < 10 || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("Scan saw %d messages, Messages lists %d, or they differ", len(got), len(want))
	}
	n := 0
	q.Scan(func(Message, []Recipient) bool { n++; return n < 3 })
	if n != 3 {
		t.Fatalf("Scan went on after fn returned false: %d calls", n)
	}
}
