package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"os"
	"runtime"
	rpprof "runtime/pprof"
	"time"
)

// profiling is what smxd run's --cpuprofile and --pprof ask for: a CPU
// profile of the whole run written to a file, and Go's pprof handlers on
// a loopback address for profiles taken while smxd runs (go tool pprof
// http://127.0.0.1:6060/debug/pprof/profile?seconds=20). Both are for
// developers measuring smxd (docs/performance.md); neither is on unless
// asked for.
type profiling struct {
	cpuFile *os.File
	srv     *http.Server
	addr    net.Addr // where srv listens
	done    chan struct{}
}

// startProfiling starts what the flags ask for. The pprof listener must be
// on a loopback address: the profiles show the daemon's memory, which may
// hold mail.
func startProfiling(cpuprofile, addr string, debug *slog.Logger) (*profiling, error) {
	p := &profiling{}
	if addr != "" {
		ap, err := netip.ParseAddrPort(addr)
		if err != nil || !ap.Addr().IsLoopback() {
			return nil, fmt.Errorf("--pprof %q: expected a loopback address and port such as 127.0.0.1:6060", addr)
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("--pprof: %w", err)
		}
		// The mutex and block profiles are empty unless sampled; these
		// rates (one contention event in 100, blocking of 100 µs and
		// more) cost little next to what they show.
		runtime.SetMutexProfileFraction(100)
		runtime.SetBlockProfileRate(int((100 * time.Microsecond).Nanoseconds()))
		mux := http.NewServeMux()
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		p.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		p.addr = ln.Addr()
		p.done = make(chan struct{})
		go func() {
			defer close(p.done)
			if err := p.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				debug.Error("pprof listener", "err", err)
			}
		}()
		debug.Info("pprof listening", "addr", ln.Addr().String())
	}
	if cpuprofile != "" {
		f, err := os.Create(cpuprofile)
		if err != nil {
			p.stop()
			return nil, fmt.Errorf("--cpuprofile: %w", err)
		}
		if err := rpprof.StartCPUProfile(f); err != nil {
			f.Close()
			p.stop()
			return nil, fmt.Errorf("--cpuprofile: %w", err)
		}
		p.cpuFile = f
	}
	return p, nil
}

// stop writes the CPU profile and closes the pprof listener.
func (p *profiling) stop() error {
	var errs []error
	if p.cpuFile != nil {
		rpprof.StopCPUProfile()
		if err := p.cpuFile.Close(); err != nil {
			errs = append(errs, fmt.Errorf("--cpuprofile: %w", err))
		}
		p.cpuFile = nil
	}
	if p.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err := p.srv.Shutdown(ctx); err != nil {
			p.srv.Close()
		}
		<-p.done
		p.srv = nil
	}
	return errors.Join(errs...)
}
