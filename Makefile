# Omni's task runner. The README's commands are these targets; .ci/run calls `make setup test`.
.PHONY: setup build plugins install-plugins test lint fmt serve bench clean

CARGO ?= cargo
WASM_TARGET := wasm32-wasip2
WASM_OUT := target/$(WASM_TARGET)/plugin
PLUGIN_DIR ?= .omni/plugins
# The task plugins, and the hostile fixture the runtime's tests need.
PLUGINS := iso rpm srpm
FIXTURES := hostile

## setup: install what building and testing need (the wasm32-wasip2 Rust target).
setup:
	./tests/setup.sh

## plugins: build every plugin component (and the test fixtures) for wasm32-wasip2.
plugins:
	$(CARGO) build --locked --target $(WASM_TARGET) --profile plugin \
		$(foreach p,$(PLUGINS) $(FIXTURES),-p omni-plugin-$(p))

## install-plugins: copy the task plugins into the default plugins directory (write, then rename).
install-plugins: plugins
	mkdir -p $(PLUGIN_DIR)
	for p in $(PLUGINS); do \
		cp $(WASM_OUT)/omni_plugin_$$p.wasm $(PLUGIN_DIR)/.$$p.wasm.tmp && \
		mv $(PLUGIN_DIR)/.$$p.wasm.tmp $(PLUGIN_DIR)/$$p.wasm; \
	done

## build: the omni binary (release) and the plugins, installed into ./.omni/plugins.
build: install-plugins
	$(CARGO) build --locked --release -p omni

## serve: build, then run `omni serve` with the defaults (127.0.0.1:8080, embedded everything).
serve: build
	./target/release/omni serve

## lint: rustfmt and clippy (warnings are errors), natively and for the wasm target.
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --workspace --all-targets -- -D warnings
	$(CARGO) clippy --locked --target $(WASM_TARGET) $(foreach p,$(PLUGINS) $(FIXTURES),-p omni-plugin-$(p)) -- -D warnings

## test: lint, build the plugins, start the Kubernetes testbed (built once, cached; recover.sh
## checks that start recovers from killed components), validate deploy/kubernetes on it
## (server-side dry run), start the S3 testbed (SeaweedFS, built once, cached), run every
## test (the Cassandra, Kubernetes and S3 tests find their testbeds through omni-test-support).
test: lint plugins
	./tests/testbed/kubernetes.sh start >/dev/null
	./tests/testbed/s3.sh start >/dev/null
	./tests/testbed/kubernetes/recover.sh
	./tests/deploy.sh
	$(CARGO) test --locked --workspace

## bench: the performance figures of the README ("Performance"): the plugin host, a job's render
## by the plugin version it records, running jobs
## (the local engine, then 1,000 and 10,000 jobs at once on the Kubernetes testbed, started as
## for `make test`), then the job service on each store (the Cassandra testbed is started, or
## OMNI_TEST_CASSANDRA is used), then webhook deliveries and the SSE stream's lag, then a sign-in under a flood of wrong passwords,
## then artifact throughput and memory (a 2 GiB file in and out of the directory store and the
## S3 testbed).
bench: plugins
	$(CARGO) bench --locked -p omni-runtime --bench plugins
	$(CARGO) bench --locked -p omni-jobs --bench render
	$(CARGO) bench --locked -p omni-scheduler --bench local
	$(CARGO) bench --locked -p omni-scheduler --bench logs
	./tests/testbed/kubernetes.sh start >/dev/null
	$(CARGO) bench --locked -p omni-scheduler --bench kube -- 1000
	$(CARGO) bench --locked -p omni-scheduler --bench kube -- 10000
	OMNI_TEST_CASSANDRA=$${OMNI_TEST_CASSANDRA:-$$(./tests/testbed/cassandra.sh start)} \
		$(CARGO) bench --locked -p omni-api --bench jobs
	$(CARGO) bench --locked -p omni-api --bench events
	$(CARGO) bench --locked -p omni-api --bench signin
	./tests/testbed/s3.sh start >/dev/null
	$(CARGO) bench --locked -p omni-artifacts --bench throughput -- 2048

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
