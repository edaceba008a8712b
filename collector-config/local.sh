#!/usr/bin/env bash
# Jaeger v2 and Prometheus on this machine, without docker, for looking at pgscope's traces and
# metrics:
#   collector-config/local.sh start   # build Jaeger once, start both, wait until they answer
#   collector-config/local.sh stop
#   collector-config/local.sh status
#   collector-config/local.sh build   # only build (or find) the Jaeger binary, print its path
# Jaeger: OTLP on 127.0.0.1:4317 (gRPC) and 4318 (HTTP), UI and query API on
# http://127.0.0.1:16686, configured by jaeger.yaml beside this script. Prometheus (Debian's
# package, installed when missing and run as root) on http://127.0.0.1:9090, scraping what
# prometheus-local.yml names.
#
# Jaeger is built from its Go module (github.com/jaegertracing/jaeger, v1.75.0) into
# $PGSCOPE_CACHE/jaeger-v1.75.0/ (default ~/.cache/pgscope): the first start takes several
# minutes, later ones reuse the binary. Logs and pid files go to $PGSCOPE_CACHE/run/.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
version=v1.75.0
cache="${PGSCOPE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pgscope}"
build_dir="$cache/jaeger-$version"
jaeger="$build_dir/jaeger"
run="$cache/run"

answers() { curl -fsS -o /dev/null --max-time 2 "$1" 2>/dev/null; }

build() {
  if [ -x "$jaeger" ]; then return 0; fi
  command -v go >/dev/null || { echo "local.sh: Go is needed to build Jaeger" >&2; exit 1; }
  mkdir -p "$build_dir/src"
  echo "local.sh: building Jaeger $version from its Go module (once; cached in $build_dir)" >&2
  local started=$SECONDS
  (
    cd "$build_dir/src"
    # A module of our own that requires Jaeger as a tool: `go install pkg@version` refuses a
    # module with replace directives, and Jaeger's go.mod has one (sarama), kept here as well.
    cat > go.mod <<MOD
module pgscope.local/jaeger-build

go 1.24

replace github.com/Shopify/sarama => github.com/Shopify/sarama v1.33.0
MOD
    rm -f go.sum
    GOFLAGS=-mod=mod go get -tool "github.com/jaegertracing/jaeger/cmd/jaeger@$version"
    GOFLAGS=-mod=mod go build -trimpath -o "$jaeger.tmp" github.com/jaegertracing/jaeger/cmd/jaeger
    mv "$jaeger.tmp" "$jaeger"
  )
  echo "local.sh: Jaeger built in $((SECONDS - started)) s" >&2
}

ensure_prometheus() {
  command -v prometheus >/dev/null && return 0
  echo "local.sh: installing Prometheus (Debian package)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq prometheus >/dev/null
  # The package starts its own service where systemd runs; ours uses its own config and data.
  systemctl stop prometheus 2>/dev/null || true
}

running() { [ -f "$run/$1.pid" ] && kill -0 "$(cat "$run/$1.pid")" 2>/dev/null; }

wait_for() { # name url seconds
  local i
  for i in $(seq 1 $(( $3 * 5 ))); do
    answers "$2" && return 0
    running "$1" || { echo "local.sh: $1 exited; its log:" >&2; tail -n 30 "$run/$1.log" >&2; exit 1; }
    sleep 0.2
  done
  echo "local.sh: $1 did not answer on $2 within $3 s; its log:" >&2
  tail -n 30 "$run/$1.log" >&2
  exit 1
}

start() {
  build
  ensure_prometheus
  mkdir -p "$run"
  if ! running jaeger; then
    "$jaeger" validate --config="file:$here/jaeger.yaml" >/dev/null 2>&1 \
      || { "$jaeger" validate --config="file:$here/jaeger.yaml"; exit 1; }
    nohup "$jaeger" --config="file:$here/jaeger.yaml" >"$run/jaeger.log" 2>&1 </dev/null &
    echo $! >"$run/jaeger.pid"
  fi
  if ! running prometheus; then
    nohup prometheus --config.file="$here/prometheus-local.yml" \
      --storage.tsdb.path="$run/prometheus-data" --web.listen-address=127.0.0.1:9090 \
      >"$run/prometheus.log" 2>&1 </dev/null &
    echo $! >"$run/prometheus.pid"
  fi
  wait_for jaeger http://127.0.0.1:16686/api/services 60
  wait_for jaeger http://127.0.0.1:13133/status 30
  wait_for prometheus http://127.0.0.1:9090/-/ready 60
  echo "Jaeger:     http://127.0.0.1:16686 (OTLP: 127.0.0.1:4317 gRPC, http://127.0.0.1:4318 HTTP)"
  echo "Prometheus: http://127.0.0.1:9090"
}

stop() {
  local name
  for name in jaeger prometheus; do
    if running "$name"; then
      kill "$(cat "$run/$name.pid")" 2>/dev/null || true
      for _ in $(seq 1 50); do running "$name" || break; sleep 0.1; done
    fi
    rm -f "$run/$name.pid"
  done
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  build) build; echo "$jaeger" ;;
  status)
    for name in jaeger prometheus; do
      if running "$name"; then echo "$name: running (pid $(cat "$run/$name.pid"))"; else echo "$name: stopped"; fi
    done ;;
  *) echo "usage: $0 start|stop|status|build" >&2; exit 2 ;;
esac
