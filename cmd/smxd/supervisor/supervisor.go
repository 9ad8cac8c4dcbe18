// Package supervisor runs smxd's components the way the seed's MCP runs
// its modules (seed 001 "Configuration for MCP", "Running sendmail X"):
// it starts them in dependency order, restarts a component that fails
// together with its restart dependencies after a backoff, restarts
// components on request, and stops them in reverse order.
//
// It knows nothing of what the components are: the daemon describes each
// one with a Component (a name, what it needs, what must restart with it,
// and a function that builds and starts an instance). The package owns
// only the instances it started and the goroutine that watches them.
package supervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"
)

// Service is a running instance of a component.
type Service interface {
	// Run runs the component until Stop is called, then returns nil; it
	// returns an error when the component fails on its own.
	Run() error
	// Stop asks Run to return, letting the component finish what it is
	// doing until ctx is done.
	Stop(ctx context.Context) error
}

// Component describes one component.
type Component struct {
	// Name identifies the component ("storage", "qmgr", "smtps MTA").
	Name string
	// Requires names the components that must be running before this one
	// starts; they start first and stop last.
	Requires []string
	// RestartDependencies names the components that are restarted when
	// this one is restarted or fails (the seed's restart_dependencies):
	// those that hold something of this one that a new instance
	// replaces.
	RestartDependencies []string
	// Start builds an instance and returns once it is ready to run (for
	// the queue manager: after recovery). ctx bounds the start only.
	Start func(ctx context.Context) (Service, error)
}

// Options configure a Supervisor.
type Options struct {
	// MinBackoff is the wait before the first restart of a failed
	// component; each further failure in a row doubles it up to
	// MaxBackoff. Defaults 1s and 1m.
	MinBackoff time.Duration
	MaxBackoff time.Duration
	// StableAfter is how long an instance must run before its failure no
	// longer counts as one in a row with the one before. Default 1m.
	StableAfter time.Duration
	// StopTimeout bounds the stop of the components a restart replaces.
	// Default 30s.
	StopTimeout time.Duration
	// After waits for a duration (time.After by default); tests pass a
	// clock they drive.
	After func(time.Duration) <-chan time.Time
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// OnEvent is told about failures and restarts, for the mail log.
	OnEvent func(Event)
	// Logger receives debug logs. Default: discard.
	Logger *slog.Logger
}

// Event reports something the supervisor did.
type Event struct {
	// Kind is "failed", "restarting", "restarted" or "restart_failed".
	Kind      string
	Component string
	// Err is the failure, for failed and restart_failed.
	Err error
	// Backoff is the wait before the restart, for failed.
	Backoff time.Duration
	// With lists the components restarted together, for restarting.
	With []string
}

// State describes one component for status reports.
type State struct {
	Name string
	// Running is false while the component waits for a restart.
	Running bool
	// Since is when the running instance started.
	Since time.Time
	// Restarts counts restarts since the supervisor started.
	Restarts int
	// LastError is the last failure, "" when there was none.
	LastError string
}

type entry struct {
	c        Component
	svc      Service
	gen      int // generation of the running instance
	running  bool
	since    time.Time
	restarts int
	failures int // in a row, for the backoff
	lastErr  error
}

type exit struct {
	name string
	gen  int
	err  error
}

// Supervisor runs components. Build it with New, start the components with
// Start and stop them with Stop.
type Supervisor struct {
	opts   Options
	order  []string // start order
	byName map[string]*entry

	mu       sync.Mutex // guards the entries' state for States
	exits    chan exit
	requests chan request
	done     chan struct{}
	loopDone chan struct{}
}

type request struct {
	names []string
	reply chan error
}

// New checks the components (unique names, known references, no cycles)
// and returns a Supervisor that starts them in an order that respects
// Requires, the order given otherwise.
func New(components []Component, opts Options) (*Supervisor, error) {
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = time.Second
	}
	if opts.MaxBackoff < opts.MinBackoff {
		opts.MaxBackoff = max(time.Minute, opts.MinBackoff)
	}
	if opts.StableAfter <= 0 {
		opts.StableAfter = time.Minute
	}
	if opts.StopTimeout <= 0 {
		opts.StopTimeout = 30 * time.Second
	}
	if opts.After == nil {
		opts.After = time.After
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.OnEvent == nil {
		opts.OnEvent = func(Event) {}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	// Each instance reports its exit once; a restart can leave at most
	// two per component unread (the stopped one and a new one that fails
	// at once), so the loop never blocks an exiting instance.
	s := &Supervisor{opts: opts, byName: map[string]*entry{}, exits: make(chan exit, 2*len(components)+1),
		requests: make(chan request), done: make(chan struct{}), loopDone: make(chan struct{})}
	for _, c := range components {
		if c.Name == "" || c.Start == nil {
			return nil, errors.New("supervisor: a component needs a name and a Start function")
		}
		if _, dup := s.byName[c.Name]; dup {
			return nil, fmt.Errorf("supervisor: component %q declared twice", c.Name)
		}
		s.byName[c.Name] = &entry{c: c}
	}
	for _, c := range components {
		for _, r := range append(slices.Clone(c.Requires), c.RestartDependencies...) {
			if _, ok := s.byName[r]; !ok {
				return nil, fmt.Errorf("supervisor: component %q refers to unknown component %q", c.Name, r)
			}
		}
	}
	// Depth-first topological order over Requires, stable in the order
	// given.
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(name string, path []string) error
	visit = func(name string, path []string) error {
		switch state[name] {
		case 1:
			return fmt.Errorf("supervisor: components require each other: %v", append(path, name))
		case 2:
			return nil
		}
		state[name] = 1
		for _, r := range s.byName[name].c.Requires {
			if err := visit(r, append(path, name)); err != nil {
				return err
			}
		}
		state[name] = 2
		s.order = append(s.order, name)
		return nil
	}
	for _, c := range components {
		if err := visit(c.Name, nil); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Order returns the component names in start order.
func (s *Supervisor) Order() []string { return slices.Clone(s.order) }

// Start starts every component in order and then watches them. If one
// fails to start, those already started are stopped and the error names
// the component.
func (s *Supervisor) Start(ctx context.Context) error {
	for i, name := range s.order {
		if err := s.startOne(ctx, s.byName[name]); err != nil {
			stopCtx, cancel := context.WithTimeout(context.Background(), s.opts.StopTimeout)
			for j := i - 1; j >= 0; j-- {
				s.stopOne(stopCtx, s.byName[s.order[j]])
			}
			cancel()
			return err
		}
	}
	go s.loop()
	return nil
}

func (s *Supervisor) startOne(ctx context.Context, e *entry) error {
	svc, err := s.startService(ctx, e.c)
	if err != nil {
		return fmt.Errorf("start %s: %w", e.c.Name, err)
	}
	s.mu.Lock()
	e.svc = svc
	e.gen++
	e.running = true
	e.since = s.opts.Now()
	gen := e.gen
	s.mu.Unlock()
	s.opts.Logger.Info("component started", "component", e.c.Name)
	go func() {
		err := s.runService(e.c.Name, svc)
		select {
		case s.exits <- exit{name: e.c.Name, gen: gen, err: err}:
		case <-s.done:
		}
	}()
	return nil
}

// startService calls c.Start, turning a panic into an error (the stack
// goes to the debug log): a component whose start panics fails like one
// whose start returns an error.
func (s *Supervisor) startService(ctx context.Context, c Component) (svc Service, err error) {
	defer func() {
		if r := recover(); r != nil {
			s.opts.Logger.Error("component start panicked", "component", c.Name, "panic", r, "stack", string(debug.Stack()))
			svc, err = nil, fmt.Errorf("panic: %v", r)
		}
	}()
	svc, err = c.Start(ctx)
	if err == nil && svc == nil {
		err = errors.New("Start returned no service")
	}
	return svc, err
}

// runService calls svc.Run, turning a panic into an error (the stack goes
// to the debug log): the MCP
// restarts a module that crashed, and in one process a crash is a panic
// of the goroutine that runs the component. (A panic in a goroutine the
// component started itself cannot be caught here; the components recover
// those of sessions and delivery attempts themselves.)
func (s *Supervisor) runService(name string, svc Service) (err error) {
	defer func() {
		if r := recover(); r != nil {
			s.opts.Logger.Error("component panicked", "component", name, "panic", r, "stack", string(debug.Stack()))
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return svc.Run()
}

// stopOne stops e's instance if it runs and waits for its Run to return.
func (s *Supervisor) stopOne(ctx context.Context, e *entry) {
	s.mu.Lock()
	running, svc := e.running, e.svc
	e.running = false
	e.gen++ // the exit of the stopped instance is not a failure
	s.mu.Unlock()
	if !running {
		return
	}
	if err := svc.Stop(ctx); err != nil {
		s.opts.Logger.Warn("component stop", "component", e.c.Name, "err", err)
	}
	s.opts.Logger.Info("component stopped", "component", e.c.Name)
}

// Restart restarts the named components and their restart dependencies at
// once (an operator's request), and returns when they run again, with the
// names of the components restarted in start order.
func (s *Supervisor) Restart(ctx context.Context, names ...string) ([]string, error) {
	for _, n := range names {
		if _, ok := s.byName[n]; !ok {
			return nil, fmt.Errorf("no component %q (components: %s)", n, strings.Join(s.order, ", "))
		}
	}
	req := request{names: names, reply: make(chan error, 1)}
	select {
	case s.requests <- req:
	case <-s.done:
		return nil, errors.New("supervisor: stopped")
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	select {
	case err := <-req.reply:
		return s.closure(names), err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Stop stops the watching loop and every component in reverse order,
// each finishing its work until ctx is done.
func (s *Supervisor) Stop(ctx context.Context) {
	select {
	case <-s.done:
	default:
		close(s.done)
	}
	<-s.loopDone
	for i := len(s.order) - 1; i >= 0; i-- {
		s.stopOne(ctx, s.byName[s.order[i]])
	}
}

// States returns the state of every component in start order.
func (s *Supervisor) States() []State {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]State, 0, len(s.order))
	for _, name := range s.order {
		e := s.byName[name]
		st := State{Name: name, Running: e.running, Restarts: e.restarts}
		if e.running {
			st.Since = e.since
		}
		if e.lastErr != nil {
			st.LastError = e.lastErr.Error()
		}
		out = append(out, st)
	}
	return out
}

// closure returns names with their restart dependencies, transitively,
// in start order.
func (s *Supervisor) closure(names []string) []string {
	set := map[string]bool{}
	var add func(string)
	add = func(n string) {
		if set[n] {
			return
		}
		set[n] = true
		for _, d := range s.byName[n].c.RestartDependencies {
			add(d)
		}
	}
	for _, n := range names {
		add(n)
	}
	var out []string
	for _, n := range s.order {
		if set[n] {
			out = append(out, n)
		}
	}
	return out
}

// loop watches the instances: a failure stops the failed component's
// restart set, waits out the backoff and starts the set again.
func (s *Supervisor) loop() {
	defer close(s.loopDone)
	type pending struct {
		names []string
		at    <-chan time.Time
	}
	var waiting []*pending
	for {
		var timer <-chan time.Time
		var next *pending
		if len(waiting) > 0 {
			next = waiting[0]
			timer = next.at
		}
		select {
		case <-s.done:
			return
		case x := <-s.exits:
			e := s.byName[x.name]
			s.mu.Lock()
			current := x.gen == e.gen && e.running
			if current {
				e.running = false
				if x.err == nil {
					x.err = errors.New("stopped without being asked to")
				}
				e.lastErr = x.err
				if s.opts.Now().Sub(e.since) >= s.opts.StableAfter {
					e.failures = 0
				}
				e.failures++
			}
			failures := e.failures
			s.mu.Unlock()
			if !current {
				continue
			}
			backoff := s.backoff(failures)
			s.opts.Logger.Error("component failed", "component", x.name, "err", x.err, "restart_in", backoff)
			s.opts.OnEvent(Event{Kind: "failed", Component: x.name, Err: x.err, Backoff: backoff})
			waiting = append(waiting, &pending{names: []string{x.name}, at: s.opts.After(backoff)})
		case <-timer:
			waiting = waiting[1:]
			if err := s.restart(next.names); err != nil {
				e := s.byName[next.names[0]]
				s.mu.Lock()
				e.failures++
				failures := e.failures
				e.lastErr = err
				s.mu.Unlock()
				backoff := s.backoff(failures)
				s.opts.OnEvent(Event{Kind: "restart_failed", Component: next.names[0], Err: err, Backoff: backoff})
				waiting = append(waiting, &pending{names: next.names, at: s.opts.After(backoff)})
			}
		case req := <-s.requests:
			req.reply <- s.restart(req.names)
		}
	}
}

// backoff is the wait before a restart after failures failures in a row:
// MinBackoff, doubled for each failure after the first, at most
// MaxBackoff.
func (s *Supervisor) backoff(failures int) time.Duration {
	b := s.opts.MinBackoff
	for i := 1; i < failures && b < s.opts.MaxBackoff; i++ {
		b *= 2
	}
	return min(b, s.opts.MaxBackoff)
}

// restart stops the restart set of names (those of it that still run) in
// reverse order and starts the whole set in order. A component that fails
// to start leaves the rest of the set stopped; the error names it.
func (s *Supervisor) restart(names []string) error {
	set := s.closure(names)
	s.opts.OnEvent(Event{Kind: "restarting", Component: names[0], With: set})
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.StopTimeout)
	for i := len(set) - 1; i >= 0; i-- {
		s.stopOne(ctx, s.byName[set[i]])
	}
	cancel()
	for _, n := range set {
		e := s.byName[n]
		if err := s.startOne(context.Background(), e); err != nil {
			s.opts.Logger.Error("component restart", "component", n, "err", err)
			return err
		}
		s.mu.Lock()
		e.restarts++
		s.mu.Unlock()
		s.opts.OnEvent(Event{Kind: "restarted", Component: n})
	}
	return nil
}
