package projections

import "slices"

// rcptRef addresses one recipient inside the Queue: its message slot and
// its index in the transaction. It is only valid while the message is in
// the Queue, so it never leaves the package.
type rcptRef struct {
	slot uint32
	idx  uint32
}

// dueEntry is one recipient in a due heap. The due time is kept in the entry
// so that sifting touches only the heap's own memory.
type dueEntry struct {
	due  int64
	slot uint32
	idx  uint32
}

// dueHeap orders recipients by due time: IQDB by the time they entered the
// queue (age), DEFEDB by next try (the seed's EDBC). Ties fall back to the
// sequence number of the recipient's last event and its index, so the order
// depends on the log alone and is the same after a restore. Each recipient
// records its position (rcpt.heapPos) so that it can be removed from the
// middle when an event changes it. container/heap would do the sifting but
// boxes every entry in an interface; this is the same algorithm on the
// concrete type.
type dueHeap struct {
	q       *Queue
	entries []dueEntry
}

func (h *dueHeap) len() int { return len(h.entries) }

func (h *dueHeap) less(i, j int) bool {
	a, b := &h.entries[i], &h.entries[j]
	if a.due != b.due {
		return a.due < b.due
	}
	ra := &h.q.store.at(a.slot).rcpts[a.idx]
	rb := &h.q.store.at(b.slot).rcpts[b.idx]
	if ra.lastSeq != rb.lastSeq {
		return ra.lastSeq < rb.lastSeq
	}
	if a.idx != b.idx {
		return a.idx < b.idx
	}
	return a.slot < b.slot
}

func (h *dueHeap) setPos(i int) {
	e := &h.entries[i]
	h.q.store.at(e.slot).rcpts[e.idx].heapPos = int32(i)
}

func (h *dueHeap) swap(i, j int) {
	h.entries[i], h.entries[j] = h.entries[j], h.entries[i]
	h.setPos(i)
	h.setPos(j)
}

func (h *dueHeap) up(j int) {
	for {
		i := (j - 1) / 2 // parent
		if i == j || !h.less(j, i) {
			break
		}
		h.swap(i, j)
		j = i
	}
}

func (h *dueHeap) down(i0, n int) bool {
	i := i0
	for {
		j1 := 2*i + 1
		if j1 >= n || j1 < 0 {
			break
		}
		j := j1
		if j2 := j1 + 1; j2 < n && h.less(j2, j1) {
			j = j2
		}
		if !h.less(j, i) {
			break
		}
		h.swap(i, j)
		i = j
	}
	return i > i0
}

func (h *dueHeap) push(e dueEntry) {
	h.entries = append(h.entries, e)
	n := len(h.entries) - 1
	h.setPos(n)
	h.up(n)
}

// remove takes out the entry at position i and marks its recipient as in
// no heap.
func (h *dueHeap) remove(i int) {
	n := len(h.entries) - 1
	gone := h.entries[i]
	if n != i {
		h.swap(i, n)
		if !h.down(i, n) {
			h.up(i)
		}
	}
	h.entries = h.entries[:n]
	h.q.store.at(gone.slot).rcpts[gone.idx].heapPos = -1
}

// peek returns the first entry; ok is false when the heap is empty.
func (h *dueHeap) peek() (dueEntry, bool) {
	if len(h.entries) == 0 {
		return dueEntry{}, false
	}
	return h.entries[0], true
}

// init orders entries collected in any order, in linear time.
func (h *dueHeap) init() {
	for i := range h.entries {
		h.setPos(i)
	}
	n := len(h.entries)
	for i := n/2 - 1; i >= 0; i-- {
		h.down(i, n)
	}
}

// ensureIndex builds the due heaps the first time the scheduler asks for
// them; from then on every Apply keeps them up to date.
func (q *Queue) ensureIndex() {
	if q.indexed {
		return
	}
	q.incoming.entries = q.incoming.entries[:0]
	q.deferred.entries = q.deferred.entries[:0]
	q.store.slots(func(slot uint32) {
		m := q.store.at(slot)
		for idx := range m.rcpts {
			r := &m.rcpts[idx]
			r.heapPos = -1
			if !r.state.Live() || r.flags&rcptClaimed != 0 || m.held(r) {
				continue
			}
			h := q.heapOf(r)
			h.entries = append(h.entries, dueEntry{due: r.due, slot: slot, idx: uint32(idx)})
		}
	})
	q.incoming.init()
	q.deferred.init()
	q.indexed = true
}

// activeQueue is AQ: the recipients the scheduler took, grouped by
// destination (0 while not resolved). AQ is bounded by AQ_max_entries, so a
// map per destination is cheap here, unlike for the whole queue.
type activeQueue struct {
	n      int
	byDest map[uint32]map[rcptRef]struct{}
}

func (a *activeQueue) add(dest uint32, ref rcptRef) {
	if a.byDest == nil {
		a.byDest = make(map[uint32]map[rcptRef]struct{})
	}
	set := a.byDest[dest]
	if set == nil {
		set = make(map[rcptRef]struct{})
		a.byDest[dest] = set
	}
	if _, ok := set[ref]; !ok {
		set[ref] = struct{}{}
		a.n++
	}
}

func (a *activeQueue) remove(dest uint32, ref rcptRef) {
	set := a.byDest[dest]
	if _, ok := set[ref]; !ok {
		return
	}
	delete(set, ref)
	a.n--
	if len(set) == 0 {
		delete(a.byDest, dest)
	}
}

// refs returns the recipients in AQ for dest in a stable order.
func (a *activeQueue) refs(dest uint32) []rcptRef {
	set := a.byDest[dest]
	out := make([]rcptRef, 0, len(set))
	for ref := range set {
		out = append(out, ref)
	}
	return out
}

// sortRefs orders refs as the log does: by the message's TxnReceived, then
// by recipient index.
func (q *Queue) sortRefs(refs []rcptRef) {
	slices.SortFunc(refs, func(a, b rcptRef) int {
		sa, sb := q.store.at(a.slot).seq, q.store.at(b.slot).seq
		switch {
		case sa < sb:
			return -1
		case sa > sb:
			return 1
		}
		return int(a.idx) - int(b.idx)
	})
}
