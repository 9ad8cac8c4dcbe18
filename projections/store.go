package projections

import "hash/maphash"

// messageStore holds the messages by slot number and finds them by ss_ta.
//
// Messages live in fixed pages of pageSize, so that growing the store never
// copies what is there and never leaves a quarter of a large slice spare,
// as append would. The ss_ta index is an open-addressing table of 8-byte
// entries instead of a map[string]uint32: a Go map costs about 40 bytes
// per entry at its usual load, the table about 14, and those 26 bytes are
// a tenth of the budget of 300 bytes per queued recipient.
type messageStore struct {
	pages [][]message
	high  uint32   // slots below high have been handed out
	free  []uint32 // released slots, reused first
	count int      // messages stored

	seed  maphash.Seed
	table []uint64 // 0 empty, else hash tag (high 32 bits) | slot+1 (low 32 bits)
}

const (
	pageShift = 12
	pageSize  = 1 << pageShift
	pageMask  = pageSize - 1
)

func newMessageStore(capacity int) messageStore {
	s := messageStore{seed: maphash.MakeSeed()}
	size := 16
	for size*3/4 < capacity {
		size *= 2
	}
	s.table = make([]uint64, size)
	return s
}

// at returns the message in slot.
func (s *messageStore) at(slot uint32) *message {
	return &s.pages[slot>>pageShift][slot&pageMask]
}

// alloc returns an empty slot.
func (s *messageStore) alloc() uint32 {
	if n := len(s.free); n > 0 {
		slot := s.free[n-1]
		s.free = s.free[:n-1]
		return slot
	}
	if s.high&pageMask == 0 && int(s.high>>pageShift) == len(s.pages) {
		s.pages = append(s.pages, make([]message, pageSize))
	}
	s.high++
	return s.high - 1
}

func (s *messageStore) tag(txn string) uint32 {
	return uint32(maphash.String(s.seed, txn) >> 32)
}

// lookup returns the slot of the message with ss_ta txn.
func (s *messageStore) lookup(txn string) (uint32, bool) {
	tag := s.tag(txn)
	mask := uint32(len(s.table) - 1)
	for i := tag & mask; ; i = (i + 1) & mask {
		e := s.table[i]
		if e == 0 {
			return 0, false
		}
		if uint32(e>>32) == tag {
			slot := uint32(e) - 1
			if s.at(slot).txn() == txn {
				return slot, true
			}
		}
	}
}

// insert indexes the message in slot, whose ss_ta must not be indexed yet.
func (s *messageStore) insert(slot uint32) {
	if (s.count+1)*4 > len(s.table)*3 {
		s.grow()
	}
	s.place(uint64(s.tag(s.at(slot).txn()))<<32 | uint64(slot+1))
	s.count++
}

func (s *messageStore) place(e uint64) {
	mask := uint32(len(s.table) - 1)
	i := uint32(e>>32) & mask
	for s.table[i] != 0 {
		i = (i + 1) & mask
	}
	s.table[i] = e
}

func (s *messageStore) grow() {
	old := s.table
	s.table = make([]uint64, 2*len(old))
	for _, e := range old {
		if e != 0 {
			s.place(e)
		}
	}
}

// remove drops the message in slot from the index and frees the slot. It
// shifts the entries after it back (linear probing without tombstones).
func (s *messageStore) remove(slot uint32) {
	mask := uint32(len(s.table) - 1)
	tag := s.tag(s.at(slot).txn())
	i := tag & mask
	for uint32(s.table[i]) != slot+1 {
		i = (i + 1) & mask
	}
	for j := (i + 1) & mask; s.table[j] != 0; j = (j + 1) & mask {
		home := uint32(s.table[j]>>32) & mask
		// The entry at j may move to the hole at i unless its home lies
		// cyclically in (i, j].
		if (j > i && (home <= i || home > j)) || (j < i && home <= i && home > j) {
			s.table[i] = s.table[j]
			i = j
		}
	}
	s.table[i] = 0
	s.count--
	*s.at(slot) = message{}
	s.free = append(s.free, slot)
}

// slots calls fn for every occupied slot, in slot order.
func (s *messageStore) slots(fn func(slot uint32)) {
	for slot := uint32(0); slot < s.high; slot++ {
		if s.at(slot).txnEnd != 0 {
			fn(slot)
		}
	}
}
