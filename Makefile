# smx: build, run, test.
#
#   make run     build and start smxd on its embedded default configuration
#   make test    go vet and every test with the race detector (fuzz seed
#                corpora included)
#   make bench   benchmarks of every package
#   make fuzz    each fuzz target for FUZZTIME, one after another
#   make relay-bench  tools/loadgen through smxd to tools/smtpsink on
#                loopback (RELAYFLAGS, e.g. -messages 20000 -sessions 50)
#   make relay-compare  the same load through Postfix 3.7 and smxd,
#                alternately, 3 rounds each, with the ratio (needs root
#                and the Debian package postfix; COMPAREFLAGS)
#   make install binaries to $(PREFIX), example configuration to
#                $(SYSCONFDIR)/smx.conf unless one is there, systemd unit
#                to $(SYSTEMDDIR)/smxd.service (docs/install.md)

GO         ?= go
PREFIX     ?= /usr/local
SYSCONFDIR ?= /etc/smx
SYSTEMDDIR ?= /etc/systemd/system
DESTDIR    ?=
TESTFLAGS  ?=
BENCHFLAGS ?=
FUZZTIME   ?= 30s
PKGS       ?= ./...
RELAYFLAGS ?=
COMPAREFLAGS ?= -messages 40000 -rounds 3

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
LDFLAGS := -X github.com/smx-mta/smx/cmd/smxd/buildinfo.version=$(VERSION)

.PHONY: all build run test bench fuzz relay-bench relay-compare install clean

all: build

# The daemon, its operator tool, and the tools developers and CI run
# against it (tools/: load generator, sink, relay benchmark driver).
build:
	$(GO) build -ldflags '$(LDFLAGS)' -o bin/smxd ./cmd/smxd
	$(GO) build -ldflags '$(LDFLAGS)' -o bin/smxctl ./cmd/smxctl
	$(GO) build -o bin/loadgen ./tools/loadgen
	$(GO) build -o bin/smtpsink ./tools/smtpsink
	$(GO) build -o bin/relaybench ./tools/relaybench

# smxd refuses to keep root without a user option; make run on a machine
# where one works as root (a CI container) says that is intended.
RUNFLAGS ?= $(if $(filter 0,$(shell id -u)),--allow-root)

run: build
	./bin/smxd run $(RUNFLAGS)

test:
	$(GO) vet $(PKGS)
	$(GO) test -race $(TESTFLAGS) $(PKGS)

bench:
	$(GO) test -run '^$$' -bench . -benchmem $(BENCHFLAGS) $(PKGS)

# The relay benchmark of the design's targets on loopback: 10000 messages
# of 5 KB over 50 sessions by default (tools/relaybench).
relay-bench: build
	./bin/relaybench -bin bin $(RELAYFLAGS)

# The design's relay target: Postfix (an instance of its own under a
# temporary directory) and smxd under the same load, alternately, and
# the ratio of their median rates (tools/README.md, docs/performance.md).
relay-compare: build
	./bin/relaybench -bin bin -mta postfix,smxd $(COMPAREFLAGS)

# Every FuzzXxx of every package, found with go test -list, runs for
# FUZZTIME; a failure stops the run and leaves the input in testdata/fuzz.
fuzz:
	@set -e; \
	for pkg in $$($(GO) list $(PKGS)); do \
		for target in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
			echo "== $$pkg $$target ($(FUZZTIME))"; \
			$(GO) test -run '^$$' -fuzz "^$$target\$$" -fuzztime $(FUZZTIME) $$pkg; \
		done; \
	done

install: build
	install -d $(DESTDIR)$(PREFIX)/sbin $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(SYSCONFDIR)
	install -m 0755 bin/smxd $(DESTDIR)$(PREFIX)/sbin/smxd
	install -m 0755 bin/smxctl $(DESTDIR)$(PREFIX)/bin/smxctl
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/smx.conf ]; then \
		echo "keeping $(DESTDIR)$(SYSCONFDIR)/smx.conf"; \
	else \
		install -m 0644 cmd/smxd/smx.conf $(DESTDIR)$(SYSCONFDIR)/smx.conf; \
	fi
	install -d $(DESTDIR)$(SYSTEMDDIR)
	sed -e 's|@SBINDIR@|$(PREFIX)/sbin|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' \
		cmd/smxd/smxd.service.in > $(DESTDIR)$(SYSTEMDDIR)/smxd.service
	chmod 0644 $(DESTDIR)$(SYSTEMDDIR)/smxd.service

clean:
	rm -rf bin
