# Omni's task runner. The README's commands are these targets; .ci/run calls `make setup test`.
.SECONDEXPANSION:
.PHONY: setup build plugins install-plugins ui ui-check test lint fmt serve bench clean

CARGO ?= cargo
WASM_TARGET := wasm32-wasip2
WASM_OUT := $(or $(CARGO_TARGET_DIR),target)/$(WASM_TARGET)/plugin
PLUGIN_DIR ?= .omni/plugins
# The task plugins, and the hostile fixture the runtime's tests need.
PLUGINS := iso rpm srpm
FIXTURES := hostile
# The task plugins in Python (plugins/<task>/app.py), and the Python fixture the runtime's tests
# need (tests/plugins/python, task pyfixture). Each is built by sdk/python/build.sh when its
# sources, the SDK, the pins or wit/ changed.
PY_PLUGINS := sign
PY_SDK := $(wildcard sdk/python/omni_sdk/*.py) sdk/python/build.sh sdk/python/env.sh \
	sdk/python/requirements.txt sdk/python/vendor.txt wit/plugin.wit

## setup: install what building and testing need (the wasm32-wasip2 Rust target, the
## virtualenv of componentize-py that builds the Python plugins).
setup:
	./tests/setup.sh

## plugins: build every plugin component (and the test fixtures) for wasm32-wasip2: the Rust
## ones with cargo, the Python ones with componentize-py, all into $(WASM_OUT).
plugins: $(foreach p,$(PY_PLUGINS) pyfixture,$(WASM_OUT)/omni_plugin_$(p).wasm)
	$(CARGO) build --locked --target $(WASM_TARGET) --profile plugin \
		$(foreach p,$(PLUGINS) $(FIXTURES),-p omni-plugin-$(p))

$(WASM_OUT)/omni_plugin_%.wasm: plugins/%/app.py $$(wildcard plugins/%/*.py) $(PY_SDK)
	./sdk/python/build.sh plugins/$* $@

$(WASM_OUT)/omni_plugin_pyfixture.wasm: $(wildcard tests/plugins/python/*.py) $(PY_SDK)
	./sdk/python/build.sh tests/plugins/python $@

## install-plugins: copy the task plugins into the default plugins directory (write, then rename).
install-plugins: plugins
	mkdir -p $(PLUGIN_DIR)
	for p in $(PLUGINS) $(PY_PLUGINS); do \
		cp $(WASM_OUT)/omni_plugin_$$p.wasm $(PLUGIN_DIR)/.$$p.wasm.tmp && \
		mv $(PLUGIN_DIR)/.$$p.wasm.tmp $(PLUGIN_DIR)/$$p.wasm; \
	done

## ui: the web UI's assets (host/ui/dist, embedded in the omni binary) from its sources, with
## the npm packages of its lockfile (npm ci).
ui:
	cd host/ui/web && npm ci --no-audit --no-fund --loglevel=error
	node host/ui/web/build.mjs host/ui/dist

## ui-check: build the UI's assets twice; both builds and the committed host/ui/dist must be
## byte-identical, and under 500 KB gzipped (tests/ui-assets.sh).
ui-check:
	./tests/ui-assets.sh

## build: the web UI's assets, the omni binary (release) and the plugins, installed into
## ./.omni/plugins.
build: install-plugins ui
	$(CARGO) build --locked --release -p omni

## serve: build, then run `omni serve` with the defaults (127.0.0.1:8080, embedded everything).
serve: build
	./target/release/omni serve

## lint: rustfmt and clippy (warnings are errors), natively and for the wasm target.
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --workspace --all-targets -- -D warnings
	$(CARGO) clippy --locked --target $(WASM_TARGET) $(foreach p,$(PLUGINS) $(FIXTURES),-p omni-plugin-$(p)) -- -D warnings

## test: lint, check the web UI's assets (two builds, the committed ones; this also installs
## the npm packages the browser tests use: axe-core), build the plugins, start the Kubernetes
## testbed (built once, cached; recover.sh checks that start recovers from killed components),
## validate deploy/kubernetes on it
## (server-side dry run), start the S3 testbed (SeaweedFS, built once, cached), run every
## test (the Cassandra, Kubernetes and S3 tests find their testbeds through omni-test-support).
test: lint ui-check plugins
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
