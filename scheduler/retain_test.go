package scheduler

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"unsafe"

	"github.com/smx-mta/smx/log"
	"github.com/smx-mta/smx/projections"
)

// decodedLike returns a copy of ev whose strings all lie in one shared
// allocation, as the log's decoder gives them (see log.Event): a string the
// scheduler keeps from it keeps that whole allocation alive. The harness
// feeds the core such events and records the allocations, so that
// retained can tell whether long-lived state points into one.
func (h *harness) decodedLike(ev log.Event) log.Event {
	var all []*string
	var collect func(v reflect.Value)
	collect = func(v reflect.Value) {
		switch v.Kind() {
		case reflect.String:
			if v.CanSet() && v.Len() > 0 {
				all = append(all, v.Addr().Interface().(*string))
			}
		case reflect.Pointer, reflect.Interface:
			if !v.IsNil() {
				collect(v.Elem())
			}
		case reflect.Struct:
			for i := range v.NumField() {
				if v.Type().Field(i).IsExported() {
					collect(v.Field(i))
				}
			}
		case reflect.Slice:
			for i := range v.Len() {
				collect(v.Index(i))
			}
		}
	}
	ev.Payload = clonePayload(ev.Payload)
	collect(reflect.ValueOf(&ev).Elem())
	var b strings.Builder
	for _, s := range all {
		b.WriteString(*s)
	}
	buf := b.String()
	off := 0
	for _, s := range all {
		n := len(*s)
		*s = buf[off : off+n]
		off += n
	}
	if len(buf) > 0 {
		h.buffers = append(h.buffers, buf)
	}
	return ev
}

// clonePayload copies a payload deeply enough that rewriting its strings
// does not touch the log's copy: the struct, and the slices and structs it
// points to.
func clonePayload(p log.Payload) log.Payload {
	if p == nil {
		return nil
	}
	v := reflect.ValueOf(p)
	if v.Kind() != reflect.Pointer || v.IsNil() {
		return p
	}
	return deepCopy(v).Interface().(log.Payload)
}

func deepCopy(v reflect.Value) reflect.Value {
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			return v
		}
		out := reflect.New(v.Type().Elem())
		out.Elem().Set(deepCopy(v.Elem()))
		return out
	case reflect.Struct:
		out := reflect.New(v.Type()).Elem()
		out.Set(v)
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				out.Field(i).Set(deepCopy(v.Field(i)))
			}
		}
		return out
	case reflect.Slice:
		if v.IsNil() {
			return v
		}
		out := reflect.MakeSlice(v.Type(), v.Len(), v.Len())
		for i := range v.Len() {
			out.Index(i).Set(deepCopy(v.Index(i)))
		}
		return out
	}
	return v
}

// retained lists the strings of the core's long-lived state (kept beyond
// the AQ entry or the transaction they came with) that point into an
// event's shared allocation.
func (h *harness) retained() []string {
	inside := func(s string) bool {
		if len(s) == 0 {
			return false
		}
		p := uintptr(unsafe.Pointer(unsafe.StringData(s)))
		for _, b := range h.buffers {
			start := uintptr(unsafe.Pointer(unsafe.StringData(b)))
			if p >= start && p < start+uintptr(len(b)) {
				return true
			}
		}
		return false
	}
	c := h.core
	var out []string
	check := func(what, s string) {
		if inside(s) {
			out = append(out, fmt.Sprintf("%s %q", what, s))
		}
	}
	for k, cn := range c.conns {
		check("conns key", k)
		check("conn key", cn.key)
	}
	for dest, reason := range c.destReason {
		check("destReason key", dest)
		check("destReason", reason)
	}
	for txn := range c.dsnPending {
		check("dsnPending key", txn)
	}
	for txn := range c.delayWarn {
		check("delayWarn key", txn)
	}
	for txn := range c.reserved {
		check("reserved key", txn)
	}
	for txn := range c.releasing {
		check("releasing key", txn)
	}
	c.q.Scan(func(m projections.Message, rcpts []projections.Recipient) bool {
		for _, s := range []string{m.Txn, m.Sender, m.Content, m.DSNOf} {
			check("projection message", s)
		}
		for _, r := range rcpts {
			for _, s := range []string{r.Addr, r.Sender, r.ORCPT, r.Destination} {
				check("projection recipient", s)
			}
		}
		return true
	})
	slices.Sort(out)
	return out
}
