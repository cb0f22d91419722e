# esi-monitor — build, test, demo and benchmarks.
# Every tool the tests need is installed here when missing (Debian/Ubuntu, apt-get), so that
# `make test` and `make demo` work on a fresh machine.

SHELL := /bin/bash
CARGO ?= cargo
APT_PACKAGES := etcd-server etcd-client protobuf-compiler snmpd snmp
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all build release deps test demo bench-jobs clean

all: build

# Installs the system packages the build and the tests need, only those that are missing.
deps:
	@missing=""; \
	command -v etcd >/dev/null || missing="$$missing etcd-server"; \
	command -v etcdctl >/dev/null || missing="$$missing etcd-client"; \
	command -v protoc >/dev/null || missing="$$missing protobuf-compiler"; \
	command -v snmpd >/dev/null && [ -x /usr/sbin/snmpd ] || missing="$$missing snmpd"; \
	command -v snmpget >/dev/null || missing="$$missing snmp"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@command -v cargo >/dev/null || { echo "cargo is missing: install a Rust toolchain (rustup)"; exit 1; }

build: deps
	$(CARGO) build

release: deps
	$(CARGO) build --release

test: deps
	$(CARGO) test --all-targets -- --test-threads=2

# Runs the service on a throwaway etcd with the Contrail simulator and the seed flows.
demo: deps
	$(CARGO) build --release --bin esi-monitor --example contrail_sim --example demo
	./target/release/examples/demo

bench-jobs: deps
	$(CARGO) build --release --bin esi-monitor --example bench_jobs
	./target/release/examples/bench_jobs

clean:
	$(CARGO) clean
