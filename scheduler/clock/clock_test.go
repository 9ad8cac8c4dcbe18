package clock

import (
	"testing"
	"time"
)

func TestFake(t *testing.T) {
	start := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	f := NewFake(start)
	a := f.NewTimer(time.Hour)
	b := f.NewTimer(2 * time.Hour)
	f.Advance(59 * time.Minute)
	select {
	case <-a.C():
		t.Fatal("fired early")
	default:
	}
	if next, ok := f.NextTimer(); !ok || !next.Equal(start.Add(time.Hour)) {
		t.Fatalf("next timer %v %v", next, ok)
	}
	f.Advance(time.Minute)
	if got := <-a.C(); !got.Equal(start.Add(time.Hour)) {
		t.Fatalf("fired at %v", got)
	}
	if !b.Stop() {
		t.Fatal("Stop of a pending timer returned false")
	}
	f.Advance(2 * time.Hour)
	select {
	case <-b.C():
		t.Fatal("stopped timer fired")
	default:
	}
	b.Reset(0)
	<-b.C()
	if !f.Now().Equal(start.Add(3 * time.Hour)) {
		t.Fatalf("now %v", f.Now())
	}
}
