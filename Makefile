# esi-monitor — build, test, packages, demo and benchmarks.
#
# What every target needs from the machine (Debian or Ubuntu packages, installed with
# apt-get when missing, and cargo-deb with cargo install) is listed in
# scripts/deps, checked by the files and commands really used (protoc *and* the
# google/protobuf/*.proto files of libprotobuf-dev, snmpd, etcd, rpm, ...). So `make demo`
# and `make test` work on a new machine; `scripts/deps --list` prints the table.
#   make deb        target/debian/esi-monitor_<version>-1_<arch>.deb
#   make rpm        target/rpm/esi-monitor-<version>-1.<arch>.rpm  (rpmbuild, packaging/esi-monitor.spec)
# (under $(CARGO_TARGET_DIR) when it is set). `make test` builds both packages first:
# tests/packaging.rs checks what they hold and installs them in a throwaway overlay.

SHELL := /bin/bash
CARGO ?= cargo
DEPS := CARGO=$(CARGO) scripts/deps
TARGET := $(abspath $(or $(CARGO_TARGET_DIR),target))
# The package's version and summary, from Cargo.toml (the deb takes them from there too).
field = $(shell sed -n 's/^$(1) = "\(.*\)"$$/\1/p' Cargo.toml | head -n 1)

.PHONY: all deps build release deb rpm unit-check test demo bench-jobs bench-snmp bench-poll bench-netconf bench-events soak clean

all: build

# Everything every target below needs (each target also checks its own part).
deps:
	@$(DEPS) build demo test packages unit-check bench-jobs bench-snmp bench-poll bench-netconf bench-events soak

build:
	@$(DEPS) build
	$(CARGO) build

release:
	@$(DEPS) build
	$(CARGO) build --release

# The Debian package; cargo-deb builds the release binary itself.
deb:
	@$(DEPS) build packages
	$(CARGO) deb

# The RPM package, from the same release binary and files.
rpm: release
	@$(DEPS) packages
	rpmbuild -bb --quiet packaging/esi-monitor.spec \
	  --define '_topdir $(TARGET)/rpmbuild' --define '_rpmdir $(TARGET)/rpm' \
	  --define '_build_name_fmt %%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm' \
	  --define 'src $(CURDIR)' --define 'binary $(TARGET)/release/esi-monitor' \
	  --define 'version $(call field,version)' --define 'summary $(call field,description)'
	@ls $(TARGET)/rpm/esi-monitor-$(call field,version)-1.*.rpm

# The shipped unit under a real systemd booted in throwaway namespaces (root; not part of
# `make test`): active, /healthz, an SNMP poll, reload, stop. UNIT_CHECK_ARGS=--no-notify
# for a binary that does not send READY=1 yet.
unit-check: release
	@$(DEPS) unit-check
	packaging/check-under-systemd.sh $(UNIT_CHECK_ARGS)

# The whole suite; every integration test starts its own etcd (and agents) on loopback.
# The examples are built first: tests/probe_runner.rs runs target/debug/examples/probe;
# and the packages: tests/packaging.rs checks them.
test: deb rpm
	@$(DEPS) test
	$(CARGO) build --examples
	$(CARGO) test --all-targets -- --test-threads=2

# Runs the service on a throwaway etcd with the Contrail simulator and the seed flows.
demo:
	@$(DEPS) demo
	$(CARGO) build --release --bin esi-monitor --example contrail_sim --example demo
	./target/release/examples/demo

# 10,000 monitoring jobs through esi-monitor and directly through etcd; prints both rates.
bench-jobs:
	@$(DEPS) bench-jobs
	$(CARGO) build --release --bin esi-monitor --example bench_jobs
	./target/release/examples/bench_jobs

# 50 SNMP agents x 100 ports: the coalescing client against the naive way and net-snmp's tools.
bench-snmp:
	@$(DEPS) bench-snmp
	$(CARGO) build --release --example bench_snmp
	./target/release/examples/bench_snmp

# 200 SNMP agents x 100 ports + 2,000 VMIs polled by esi-monitor for 10 intervals of 5 s:
# results per CPU-second, peak RSS, flip-to-etcd delays, device requests per interval;
# Debian's prometheus-snmp-exporter polls the same agents alongside (installed when missing;
# without it the run says why). --instances 2 or 3 shares the polling between instances and
# adds 5 kill -9 failover trials. Options (ARGS or BENCH_POLL_ARGS):
#   make bench-poll ARGS="--instances 3"    make bench-poll ARGS="--agents 100 --intervals 6"
bench-poll:
	@$(DEPS) bench-poll
	$(CARGO) build --release --bin esi-monitor --example bench_poll
	./target/release/examples/bench_poll $(BENCH_POLL_ARGS) $(ARGS)

# 50 sshd-backed NETCONF devices x (20 VRRP groups + 10 BGP peers) polled by esi-monitor for
# 10 intervals of 5 s: results per CPU-second, RPCs and SSH handshakes per interval,
# flip-to-etcd delays, peak RSS; and a sample polled the original's way (a session and an
# RPC per object) as the ratio. Options: make bench-netconf BENCH_NETCONF_ARGS="--devices 20"
bench-netconf:
	@$(DEPS) bench-netconf
	$(CARGO) build --release --bin esi-monitor --example bench_netconf
	./target/release/examples/bench_netconf $(BENCH_NETCONF_ARGS) $(ARGS)

# 100 SNMP agents x 100 ports at a 60 s interval, one esi-monitor receiving traps (SPEC §5.1):
# flip-to-etcd delays of 100 flips each announced by a real snmptrap linkDown/linkUp, and of
# 100 left to polling (the interval-bound figure, ~1-2 minutes), in the same run; CPU per
# trap over a burst of 20,000; polls the burst triggered, and polling after it.
# Options: make bench-events ARGS="--flips 50 --burst 50000" (or BENCH_EVENTS_ARGS)
bench-events:
	@$(DEPS) bench-events
	$(CARGO) build --release --bin esi-monitor --example bench_events
	./target/release/examples/bench_events $(BENCH_EVENTS_ARGS) $(ARGS)

# Not part of `make test`: 200 SNMP agents x 100 ports = 20,000 objects polled for 30 minutes
# with flips every minute; every minute the RSS and open descriptors of esi-monitor; fails
# unless both stayed flat (±10 % of minute 5) and every flip's DOWN and UP reached etcd.
# Options: make soak ARGS="--minutes 60 --instances 3" (or SOAK_ARGS)
soak:
	@$(DEPS) soak
	$(CARGO) build --release --bin esi-monitor --example soak
	./target/release/examples/soak $(SOAK_ARGS) $(ARGS)

clean:
	$(CARGO) clean
