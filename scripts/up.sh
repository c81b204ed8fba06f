#!/usr/bin/env bash
# `just up`: the mock LLM and Envoy with envoy-config/gateway.yaml, in the foreground. Ctrl-C stops both.
#
# Providers: when OPENAI_API_KEY / ANTHROPIC_API_KEY is set, the key is written to .run/keys/openai /
# .run/keys/anthropic (mode 600, git-ignored; atomically, before Envoy starts), where the credential_injector
# on the `openai` / `anthropic` cluster reads it (through envoy-config/secrets/<provider>.yaml), and that
# cluster goes to the real service. Otherwise the key file is removed, the cluster points at a local mock
# backend named `openai` / `anthropic`, and nothing leaves the machine. Envoy runs from the repository root:
# the SDS and key file paths in gateway.yaml are relative to it.
# Rotate a key while it runs: write the new one aside and rename it over the old file, e.g.
#   (umask 077 && printf %s "$NEW_KEY" > .run/keys/.openai.tmp) && mv -f .run/keys/.openai.tmp .run/keys/openai
#
# Environment: AIGW_PORT (10000), AIGW_ADMIN_PORT (9901), AIGW_MOCK_PORT (18080; the mock backends use
# this port and the next three), AIGW_LOG_LEVEL (info: the filters' logs), ENVOY_BIN, AIGW_DIST.
set -euo pipefail
cd "$(dirname "$0")/.."

port=${AIGW_PORT:-10000}
admin_port=${AIGW_ADMIN_PORT:-9901}
mock_port=${AIGW_MOCK_PORT:-18080}
secondary_port=$((mock_port + 1)) openai_port=$((mock_port + 2)) anthropic_port=$((mock_port + 3))
envoy=${ENVOY_BIN:-.tools/bin/envoy}
dist=${AIGW_DIST:-dist}

cargo build --quiet -p mock-llm -p aigw-e2e --bins
bin_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/debug

mkdir -p .run/keys
chmod 700 .run .run/keys
render=(--config envoy-config/gateway.yaml --out .run/gateway.yaml --dist "$dist"
        --listener-port "$port" --admin-port "$admin_port"
        --cluster "mock=$mock_port" --cluster "mock-secondary=$secondary_port")
providers=()
for provider in openai anthropic; do
    var=$(echo "$provider" | tr '[:lower:]' '[:upper:]')_API_KEY
    if [ -n "${!var:-}" ]; then
        # Written aside (mode 600) and renamed over the key file, so no reader ever sees a partial key.
        tmp=$(umask 077 && mktemp ".run/keys/.$provider.XXXXXX")
        printf '%s' "${!var}" > "$tmp"
        mv -f "$tmp" ".run/keys/$provider"
        providers+=("$provider: the real service (key in .run/keys/$provider)")
    else
        rm -f ".run/keys/$provider"
        [ "$provider" = openai ] && p=$openai_port || p=$anthropic_port
        render+=(--cluster "$provider=$p")
        providers+=("$provider: the mock on 127.0.0.1:$p (set $var for the real one)")
    fi
done
# AIGW_OTLP_ENDPOINT=host:port: OpenTelemetry traces to that OTLP/gRPC collector (envoy-config/observability/).
[ -n "${AIGW_OTLP_ENDPOINT:-}" ] && render+=(--otlp "$AIGW_OTLP_ENDPOINT")
"$bin_dir/aigw-render-config" "${render[@]}"

pids=()
cleanup() {
    trap - INT TERM EXIT
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup INT TERM EXIT

"$bin_dir/mock-llm" --listen "127.0.0.1:$mock_port" --name mock --listen "127.0.0.1:$secondary_port" --name mock-secondary \
    --listen "127.0.0.1:$openai_port" --name openai --listen "127.0.0.1:$anthropic_port" --name anthropic &
pids+=($!)
for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$mock_port/healthz" >/dev/null 2>&1 && break; sleep 0.1; done

"$envoy" -c .run/gateway.yaml --concurrency 2 --log-level warn --component-log-level "wasm:${AIGW_LOG_LEVEL:-info}" \
    --base-id "$admin_port" --disable-hot-restart &
pids+=($!)
for _ in $(seq 300); do
    [ "$(curl -fsS "http://127.0.0.1:$admin_port/ready" 2>/dev/null)" = LIVE ] && break
    kill -0 "${pids[1]}" 2>/dev/null || { echo "Envoy exited during start-up (see above)" >&2; exit 1; }
    sleep 0.1
done

cat <<INFO

aigw is up: gateway http://127.0.0.1:$port   admin http://127.0.0.1:$admin_port   mock http://127.0.0.1:$mock_port
$(printf '  %s\n' "${providers[@]}")
Rendered config: .run/gateway.yaml. Access log (JSON, one line per request) and filter logs below.
Traces: ${AIGW_OTLP_ENDPOINT:+OpenTelemetry to $AIGW_OTLP_ENDPOINT (OTLP/gRPC)}${AIGW_OTLP_ENDPOINT:-off (AIGW_OTLP_ENDPOINT=host:port just up turns them on)}. Metrics: http://127.0.0.1:$admin_port/stats/prometheus

Demo API keys (envoy-config/secrets/api-keys.yaml; Authorization: Bearer, x-api-key or api-key):
  sk-aigw-retail-demo   client retail: models gpt-4o-mini, failover-demo; retail's system prompt
  sk-aigw-wealth-demo   client wealth: every model; wealth's system prompt and templates
  (no key: anonymous, every model; a wrong key: 401 invalid_api_key)

  export OPENAI_API_KEY=sk-aigw-retail-demo
  python3 -c 'from openai import OpenAI; print(OpenAI(base_url="http://127.0.0.1:$port/v1").chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]).choices[0].message.content)'

Try:
  curl -s http://127.0.0.1:$port/v1/chat/completions -H "Authorization: Bearer sk-aigw-retail-demo" -H 'content-type: application/json' \\
    -d '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hello, my email is jane@example.com"}]}'
  curl -sN http://127.0.0.1:$port/v1/chat/completions -H 'content-type: application/json' -H 'x-mock-chunk-delay-ms: 200' \\
    -d '{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Stream me a few words"}]}'
  curl -s http://127.0.0.1:$mock_port/_mock/requests      # what the provider received
  curl -s http://127.0.0.1:$admin_port/stats/prometheus | grep aigw
  just demo                                                 # a scripted tour
Ctrl-C stops Envoy and the mock.

INFO
wait "${pids[1]}"
