#!/usr/bin/env bash
# Retakes the console screenshots the README shows (docs/console-*.png): the console example
# serves the feed app's N+1 and JOIN versions under a little load, then headless Chromium
# photographs the requests page, one request's waterfall and the routes page.
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/ensure-postgres
if ! command -v chromium >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null
fi
cargo run --example console --features console -- --screenshots docs
