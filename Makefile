# esi-monitor — build, test, packages, demo and benchmarks.
#
# Every tool the build and the tests need is installed here when it is missing (Debian or
# Ubuntu, with apt-get), so `make test` and `make demo` work on a fresh machine:
#   etcd, etcdctl   the real etcd the tests start (etcd-server, etcd-client)
#   protoc          needed to build the etcd client (protobuf-compiler)
#   snmpd, snmpget  the real SNMP agent of the SNMP tests (snmpd, snmp)
#   rpm             reads the .rpm in tests/packaging.rs (rpm -qp) and installs it there
#   systemd-analyze verifies the shipped unit (systemd)
#   dpkg-shlibdeps  the deb's library dependencies (dpkg-dev); readelf (binutils);
#                   adduser, which the deb's postinst prefers to useradd; curl (unit-check)
# and, with `cargo install --locked` when missing, cargo-deb and cargo-generate-rpm:
#   make deb        target/debian/esi-monitor_<version>-1_<arch>.deb
#   make rpm        target/generate-rpm/esi-monitor-<version>-1.<arch>.rpm
# (under $CARGO_TARGET_DIR when it is set). `make test` builds both packages first:
# tests/packaging.rs checks what they hold and installs them in a throwaway overlay.

SHELL := /bin/bash
CARGO ?= cargo
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# command:package pairs; the package is installed when the command is not found.
TOOLS := etcd:etcd-server etcdctl:etcd-client protoc:protobuf-compiler \
         /usr/sbin/snmpd:snmpd snmpget:snmp rpm:rpm systemd-analyze:systemd \
         dpkg-shlibdeps:dpkg-dev readelf:binutils /usr/sbin/adduser:adduser curl:curl \
         openssl:openssl
# The packaging tools, pinned to versions that build with the installed rustc (cargo-deb
# 3.8 needs 1.85 or later).
CARGO_DEB := cargo-deb@3.8.0
CARGO_GENERATE_RPM := cargo-generate-rpm@0.21.1

.PHONY: all deps build release deb rpm unit-check test demo bench-jobs bench-snmp bench-poll clean

all: build

deps:
	@missing=""; \
	for pair in $(TOOLS); do \
	  cmd=$${pair%%:*}; pkg=$${pair##*:}; \
	  command -v $$cmd >/dev/null 2>&1 || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@command -v $(CARGO) >/dev/null || { echo "cargo is missing: install a Rust toolchain (rustup)"; exit 1; }

build: deps
	$(CARGO) build

release: deps
	$(CARGO) build --release

# The Debian package; cargo-deb builds the release binary itself.
deb: deps
	@$(CARGO) deb --version >/dev/null 2>&1 || $(CARGO) install --locked $(CARGO_DEB)
	$(CARGO) deb

# The RPM package, from the same release binary and files.
rpm: release
	@$(CARGO) generate-rpm --version >/dev/null 2>&1 || $(CARGO) install --locked $(CARGO_GENERATE_RPM)
	$(CARGO) generate-rpm

# The shipped unit under a real systemd booted in throwaway namespaces (root; not part of
# `make test`): active, /healthz, an SNMP poll, reload, stop. UNIT_CHECK_ARGS=--no-notify
# for a binary that does not send READY=1 yet.
unit-check: release
	packaging/check-under-systemd.sh $(UNIT_CHECK_ARGS)

# The whole suite; every integration test starts its own etcd (and agents) on loopback.
# The examples are built first: tests/probe_runner.rs runs target/debug/examples/probe;
# and the packages: tests/packaging.rs checks them.
test: deps deb rpm
	$(CARGO) build --examples
	$(CARGO) test --all-targets -- --test-threads=2

# Runs the service on a throwaway etcd with the Contrail simulator and the seed flows.
demo: deps
	$(CARGO) build --release --bin esi-monitor --example contrail_sim --example demo
	./target/release/examples/demo

# 10,000 monitoring jobs through esi-monitor and directly through etcd; prints both rates.
bench-jobs: deps
	$(CARGO) build --release --bin esi-monitor --example bench_jobs
	./target/release/examples/bench_jobs

# 50 SNMP agents x 100 ports: the coalescing client against the naive way and net-snmp's tools.
bench-snmp: deps
	$(CARGO) build --release --example bench_snmp
	./target/release/examples/bench_snmp

# 200 SNMP agents x 100 ports + 2,000 VMIs polled by esi-monitor for 10 intervals of 5 s:
# results per CPU-second, peak RSS, flip-to-etcd delays; Debian's prometheus-snmp-exporter
# polls the same agents alongside (installed when missing; without it the run says why).
# Options: make bench-poll BENCH_POLL_ARGS="--agents 100 --intervals 6"
bench-poll: deps
	@command -v prometheus-snmp-exporter >/dev/null 2>&1 || { \
	  echo "installing: prometheus-snmp-exporter"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends prometheus-snmp-exporter \
	  || echo "prometheus-snmp-exporter could not be installed; bench-poll runs without the comparison"; }
	$(CARGO) build --release --bin esi-monitor --example bench_poll
	./target/release/examples/bench_poll $(BENCH_POLL_ARGS)

clean:
	$(CARGO) clean
