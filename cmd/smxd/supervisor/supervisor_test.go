package supervisor

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// journal records what the fake components do, in order.
type journal struct {
	mu    sync.Mutex
	lines []string
	ch    chan string
}

func newJournal() *journal { return &journal{ch: make(chan string, 100)} }

func (j *journal) add(s string) {
	j.mu.Lock()
	j.lines = append(j.lines, s)
	j.mu.Unlock()
	j.ch <- s
}

// wait reads journal lines until want has been seen, failing after a
// bounded time.
func (j *journal) wait(t *testing.T, want ...string) {
	t.Helper()
	for _, w := range want {
		select {
		case got := <-j.ch:
			require.Equal(t, w, got)
		case <-time.After(10 * time.Second):
			t.Fatalf("timed out waiting for %q", w)
		}
	}
}

// fake is a component instance that runs until stopped or told to fail.
type fake struct {
	name string
	j    *journal
	fail chan error
	stop chan struct{}
	once sync.Once
}

func (f *fake) Run() error {
	select {
	case err := <-f.fail:
		f.j.add("exit " + f.name)
		return err
	case <-f.stop:
		return nil
	}
}

func (f *fake) Stop(ctx context.Context) error {
	f.once.Do(func() { close(f.stop) })
	f.j.add("stop " + f.name)
	return nil
}

// world builds components whose current instances the test can reach.
type world struct {
	j         *journal
	mu        sync.Mutex
	instances map[string]*fake
	startErr  map[string]error
}

func (w *world) component(name string, requires, restartDeps []string) Component {
	return Component{Name: name, Requires: requires, RestartDependencies: restartDeps,
		Start: func(ctx context.Context) (Service, error) {
			w.mu.Lock()
			err := w.startErr[name]
			w.mu.Unlock()
			if err != nil {
				w.j.add("start failed " + name)
				return nil, err
			}
			f := &fake{name: name, j: w.j, fail: make(chan error, 1), stop: make(chan struct{})}
			w.mu.Lock()
			w.instances[name] = f
			w.mu.Unlock()
			w.j.add("start " + name)
			return f, nil
		}}
}

func (w *world) failNow(name string, err error) {
	w.mu.Lock()
	f := w.instances[name]
	w.mu.Unlock()
	f.fail <- err
}

// manualTimer hands out channels that fire when the test says so.
type manualTimer struct {
	waits chan time.Duration
	fires chan chan time.Time
}

func newManualTimer() *manualTimer {
	return &manualTimer{waits: make(chan time.Duration, 10), fires: make(chan chan time.Time, 10)}
}

func (m *manualTimer) After(d time.Duration) <-chan time.Time {
	ch := make(chan time.Time, 1)
	m.waits <- d
	m.fires <- ch
	return ch
}

// expect waits for the supervisor to ask for a wait of d and fires it.
func (m *manualTimer) expect(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case got := <-m.waits:
		require.Equal(t, d, got)
		(<-m.fires) <- time.Now()
	case <-time.After(10 * time.Second):
		t.Fatalf("no backoff of %v asked for", d)
	}
}

func newWorld(t *testing.T, timer *manualTimer, events *[]Event, mu *sync.Mutex) (*world, *Supervisor) {
	t.Helper()
	w := &world{j: newJournal(), instances: map[string]*fake{}, startErr: map[string]error{}}
	comps := []Component{
		// Declared out of order: Requires decides.
		w.component("smtps", []string{"qmgr", "storage"}, nil),
		w.component("qmgr", []string{"storage"}, nil),
		w.component("storage", nil, []string{"qmgr", "smtps"}),
		w.component("control", []string{"qmgr"}, nil),
	}
	s, err := New(comps, Options{MinBackoff: time.Second, MaxBackoff: 4 * time.Second, StableAfter: time.Hour,
		After: timer.After, OnEvent: func(e Event) { mu.Lock(); *events = append(*events, e); mu.Unlock() }})
	require.NoError(t, err)
	return w, s
}

func TestStartOrderRestartAndStop(t *testing.T) {
	timer := newManualTimer()
	var events []Event
	var mu sync.Mutex
	w, s := newWorld(t, timer, &events, &mu)
	require.Equal(t, []string{"storage", "qmgr", "smtps", "control"}, s.Order())

	require.NoError(t, s.Start(context.Background()))
	w.j.wait(t, "start storage", "start qmgr", "start smtps", "start control")

	// A component without restart dependencies comes back alone, after
	// the backoff; the backoff doubles with each failure in a row.
	w.failNow("qmgr", errors.New("feed: damaged record"))
	w.j.wait(t, "exit qmgr")
	timer.expect(t, time.Second)
	w.j.wait(t, "start qmgr")
	w.failNow("qmgr", errors.New("again"))
	w.j.wait(t, "exit qmgr")
	timer.expect(t, 2*time.Second)
	w.j.wait(t, "start qmgr")

	// The storage takes its restart dependencies with it: stopped in
	// reverse order, started in order.
	w.failNow("storage", errors.New("fsync: input/output error"))
	w.j.wait(t, "exit storage")
	timer.expect(t, time.Second)
	w.j.wait(t, "stop smtps", "stop qmgr", "start storage", "start qmgr", "start smtps")

	states := s.States()
	require.Len(t, states, 4)
	require.Equal(t, "storage", states[0].Name)
	require.True(t, states[0].Running)
	require.Equal(t, 1, states[0].Restarts)
	require.Equal(t, "fsync: input/output error", states[0].LastError)
	require.Equal(t, 3, states[1].Restarts, "qmgr: two failures and one restart with storage")

	// An operator's restart needs no failure and no backoff.
	restarted, err := s.Restart(context.Background(), "smtps")
	require.NoError(t, err)
	require.Equal(t, []string{"smtps"}, restarted)
	w.j.wait(t, "stop smtps", "start smtps")
	_, err = s.Restart(context.Background(), "nope")
	require.ErrorContains(t, err, `no component "nope"`)

	s.Stop(context.Background())
	w.j.wait(t, "stop control", "stop smtps", "stop qmgr", "stop storage")

	mu.Lock()
	defer mu.Unlock()
	var kinds []string
	for _, e := range events {
		kinds = append(kinds, e.Kind+" "+e.Component)
	}
	require.Equal(t, []string{
		"failed qmgr", "restarting qmgr", "restarted qmgr",
		"failed qmgr", "restarting qmgr", "restarted qmgr",
		"failed storage", "restarting storage", "restarted storage", "restarted qmgr", "restarted smtps",
		"restarting smtps", "restarted smtps",
	}, kinds)
}

func TestRestartThatFailsToStartBacksOff(t *testing.T) {
	timer := newManualTimer()
	var events []Event
	var mu sync.Mutex
	w, s := newWorld(t, timer, &events, &mu)
	require.NoError(t, s.Start(context.Background()))
	w.j.wait(t, "start storage", "start qmgr", "start smtps", "start control")

	w.mu.Lock()
	w.startErr["control"] = errors.New("socket in use")
	w.mu.Unlock()
	w.failNow("control", errors.New("accept: bad file descriptor"))
	w.j.wait(t, "exit control")
	timer.expect(t, time.Second)
	w.j.wait(t, "start failed control")
	timer.expect(t, 2*time.Second)
	w.j.wait(t, "start failed control")
	w.mu.Lock()
	delete(w.startErr, "control")
	w.mu.Unlock()
	timer.expect(t, 4*time.Second)
	w.j.wait(t, "start control")
	s.Stop(context.Background())
	w.j.wait(t, "stop control", "stop smtps", "stop qmgr", "stop storage")
}

func TestStartFailureStopsWhatStarted(t *testing.T) {
	timer := newManualTimer()
	var events []Event
	var mu sync.Mutex
	w, s := newWorld(t, timer, &events, &mu)
	w.startErr["smtps"] = fmt.Errorf("listen: address in use")
	err := s.Start(context.Background())
	require.EqualError(t, err, "start smtps: listen: address in use")
	w.j.wait(t, "start storage", "start qmgr", "start failed smtps", "stop qmgr", "stop storage")
}

func TestNewRejectsBadGraphs(t *testing.T) {
	start := func(context.Context) (Service, error) { return nil, nil }
	_, err := New([]Component{{Name: "a", Requires: []string{"b"}, Start: start}, {Name: "b", Requires: []string{"a"}, Start: start}}, Options{})
	require.ErrorContains(t, err, "require each other")
	_, err = New([]Component{{Name: "a", RestartDependencies: []string{"x"}, Start: start}}, Options{})
	require.ErrorContains(t, err, `unknown component "x"`)
	_, err = New([]Component{{Name: "a", Start: start}, {Name: "a", Start: start}}, Options{})
	require.ErrorContains(t, err, "declared twice")
}

// panicky is a component instance whose Run panics when told to.
type panicky struct {
	boom chan string
	stop chan struct{}
	once sync.Once
}

func (p *panicky) Run() error {
	select {
	case v := <-p.boom:
		panic(v)
	case <-p.stop:
		return nil
	}
}

func (p *panicky) Stop(context.Context) error {
	p.once.Do(func() { close(p.stop) })
	return nil
}

// TestPanicIsAFailure: a component whose Run panics (the crash of a
// module, for the MCP) fails and is restarted after the backoff like one
// that returns an error; the process goes on. A Start that panics is a
// failed start.
func TestPanicIsAFailure(t *testing.T) {
	timer := newManualTimer()
	var mu sync.Mutex
	var events []Event
	instances := make(chan *panicky, 10)
	panicOnStart := make(chan bool, 10)
	comps := []Component{{Name: "qmgr", Start: func(context.Context) (Service, error) {
		select {
		case <-panicOnStart:
			panic("start went wrong")
		default:
		}
		p := &panicky{boom: make(chan string, 1), stop: make(chan struct{})}
		instances <- p
		return p, nil
	}}}
	s, err := New(comps, Options{MinBackoff: time.Second, MaxBackoff: 4 * time.Second, StableAfter: time.Hour, After: timer.After,
		OnEvent: func(e Event) { mu.Lock(); events = append(events, e); mu.Unlock() }})
	require.NoError(t, err)
	require.NoError(t, s.Start(context.Background()))
	first := <-instances

	panicOnStart <- true
	first.boom <- "index out of range"
	timer.expect(t, time.Second)   // the restart whose Start panics
	timer.expect(t, 2*time.Second) // backs off again
	second := <-instances          // and then starts
	require.NotSame(t, first, second)
	require.Equal(t, "start qmgr: panic: start went wrong", s.States()[0].LastError)

	s.Stop(context.Background())
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, "failed", events[0].Kind)
	require.EqualError(t, events[0].Err, "panic: index out of range")
	require.Equal(t, "restart_failed", events[2].Kind)
	require.EqualError(t, events[2].Err, "start qmgr: panic: start went wrong")
}

func TestStartWithoutService(t *testing.T) {
	s, err := New([]Component{{Name: "x", Start: func(context.Context) (Service, error) { return nil, nil }}}, Options{})
	require.NoError(t, err)
	require.EqualError(t, s.Start(context.Background()), "start x: Start returned no service")
}
