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
#
# AIGW_REPLICAS=2: two Envoys (ports AIGW_PORT and AIGW_PORT+1, admin AIGW_ADMIN_PORT and AIGW_ADMIN_PORT+1) in
# front of the same mock, with token-counter's reference budgets on a store they share: redis-server on
# AIGW_REDIS_PORT (16379) and our rate limit service (tools/ratelimit-redis) on AIGW_RLS_PORT (18181, the
# `ratelimit` cluster of gateway.yaml). token-counter's configuration is gateway.yaml's plus
# `"store": {"rls": {"cluster": "ratelimit"}}`.
set -euo pipefail
cd "$(dirname "$0")/.."

port=${AIGW_PORT:-10000}
admin_port=${AIGW_ADMIN_PORT:-9901}
mock_port=${AIGW_MOCK_PORT:-18080}
secondary_port=$((mock_port + 1)) openai_port=$((mock_port + 2)) anthropic_port=$((mock_port + 3))
envoy=${ENVOY_BIN:-.tools/bin/envoy}
dist=${AIGW_DIST:-dist}
replicas=${AIGW_REPLICAS:-1}
redis_port=${AIGW_REDIS_PORT:-16379}
rls_port=${AIGW_RLS_PORT:-18181}
case "$replicas" in 1|2) ;; *) echo "AIGW_REPLICAS must be 1 or 2" >&2; exit 1 ;; esac

packages=(-p mock-llm -p aigw-e2e)
[ "$replicas" = 2 ] && packages+=(-p ratelimit-redis)
cargo build --quiet "${packages[@]}" --bins
bin_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/debug

mkdir -p .run/keys
chmod 700 .run .run/keys
# AIGW_CONFIG=gateway-bundle.yaml: the one-pass build (dist/aigw.wasm) instead of the five modules.
config_file="envoy-config/${AIGW_CONFIG:-gateway.yaml}"
[ -f "$config_file" ] || { echo "AIGW_CONFIG: no $config_file" >&2; exit 1; }
render=(--config "$config_file" --out .run/gateway.yaml --dist "$dist"
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
if [ "$replicas" = 2 ]; then
    # gateway.yaml's token-counter configuration (between its BEGIN/END markers), on the shared store.
    python3 - "$rls_port" > .run/token-counter-rls.json <<'PY'
import json, re, sys
text = open("envoy-config/gateway.yaml").read()
block = text.split("# BEGIN token-counter configuration", 1)[1].split("# END token-counter configuration", 1)[0]
value = block.split("value: |", 1)[1]
config = json.loads(value)
config["store"] = {"rls": {"cluster": "ratelimit", "domain": "aigw", "timeout_ms": 200}}
print(json.dumps(config))
PY
    render+=(--filter-config "token-counter=.run/token-counter-rls.json" --cluster "ratelimit=$rls_port")
fi
"$bin_dir/aigw-render-config" "${render[@]}"
if [ "$replicas" = 2 ]; then
    # The second replica: the same config on the next listener and admin ports.
    render2=("${render[@]}")
    for i in "${!render2[@]}"; do
        case "${render2[$i]}" in
            .run/gateway.yaml) render2[$i]=.run/gateway-2.yaml ;;
            --listener-port) render2[$((i + 1))]=$((port + 1)) ;;
            --admin-port) render2[$((i + 1))]=$((admin_port + 1)) ;;
        esac
    done
    "$bin_dir/aigw-render-config" "${render2[@]}"
fi

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

if [ "$replicas" = 2 ]; then
    redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no >/dev/null &
    pids+=($!)
    "$bin_dir/ratelimit-redis" --listen "127.0.0.1:$rls_port" --redis "127.0.0.1:$redis_port" >/dev/null &
    pids+=($!)
    "$envoy" -c .run/gateway-2.yaml --concurrency 2 --log-level warn --component-log-level "wasm:${AIGW_LOG_LEVEL:-info}" \
        --base-id "$((admin_port + 1))" --disable-hot-restart &
    pids+=($!)
fi

"$envoy" -c .run/gateway.yaml --concurrency 2 --log-level warn --component-log-level "wasm:${AIGW_LOG_LEVEL:-info}" \
    --base-id "$admin_port" --disable-hot-restart &
pids+=($!)
envoy_pid=$!
for admin in $(seq "$admin_port" "$((admin_port + replicas - 1))"); do
    for _ in $(seq 300); do
        [ "$(curl -fsS "http://127.0.0.1:$admin/ready" 2>/dev/null)" = LIVE ] && break
        for pid in "${pids[@]}"; do
            kill -0 "$pid" 2>/dev/null || { echo "a process exited during start-up (see above)" >&2; exit 1; }
        done
        sleep 0.1
    done
done
if [ "$replicas" = 2 ]; then
    cat <<INFO

Two replicas share token-counter's budgets: gateway http://127.0.0.1:$port and http://127.0.0.1:$((port + 1))
(admin $admin_port and $((admin_port + 1))), counted by redis-server on 127.0.0.1:$redis_port through the rate limit
service on 127.0.0.1:$rls_port: a subject's tokens spent on one replica are gone on the other too.
  redis-cli -p $redis_port --scan --pattern 'aigw-rl*'     # the shared counters
INFO
fi

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
wait "$envoy_pid"
