#!/usr/bin/env bash
# schemathesis against a live instance (SPEC §9): /openapi.json must be valid OpenAPI 3.1,
# every operation in it is exercised with generated requests, and any 5xx or any response
# that contradicts the document fails the run. The checks, and the few justified exclusions, are in
# .ci/schemathesis.toml. A fixed seed and a bounded number of examples keep it
# reproducible and to about a minute; `timeout` bounds it if something hangs.
#
# The instance runs with --workers 0 (an accept-only node): nothing it accepts is ever
# delivered, so no generated callback URL is ever called.
set -euo pipefail
cd "$(dirname "$0")/.."

# The Python tools, pinned: the document's validator (OpenAPI 3.1) and schemathesis.
TOOLS="openapi-spec-validator==0.9.0 schemathesis==4.32.5"
SEED=20261130
MAX_EXAMPLES=500
TIME_LIMIT_SECS=600

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/consuma-target}"
venv="${CONSUMA_VENV:-/var/tmp/consuma-venv}"
config="$PWD/.ci/schemathesis.toml"

# A virtual environment outside the clone, reused while it holds the pinned versions.
if [ "$(cat "$venv/.consuma-tools" 2>/dev/null)" != "$TOOLS" ]; then
  python3 -m venv --clear "$venv"
  # shellcheck disable=SC2086 # one argument per requirement
  "$venv/bin/pip" install --quiet --disable-pip-version-check $TOOLS
  echo "$TOOLS" >"$venv/.consuma-tools"
fi

# The binary as shipped (without the test suite's fault-injection feature).
cargo build --quiet --bin consuma
bin="$CARGO_TARGET_DIR/debug/consuma"

work=$(mktemp -d)
server=""
stop() {
  if [ -n "$server" ]; then
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap stop EXIT

# Port 0: the instance picks a free port and logs it.
"$bin" serve --workers 0 --work-delay-ms 0 --bind 127.0.0.1:0 \
  --database-url "sqlite://$work/consuma.db" --log-format text >"$work/server.log" 2>&1 &
server=$!
addr=""
for _ in $(seq 1 100); do
  addr=$(sed -n 's/.*listening addr=\([0-9.:]*\).*/\1/p' "$work/server.log" | head -n 1)
  [ -n "$addr" ] && curl -fsS "http://$addr/readyz" >/dev/null 2>&1 && break
  kill -0 "$server" 2>/dev/null || { cat "$work/server.log"; exit 1; }
  sleep 0.1
done
curl -fsS "http://$addr/readyz" >/dev/null || { cat "$work/server.log"; exit 1; }

# The document itself must be valid OpenAPI 3.1.
curl -fsS "http://$addr/openapi.json" -o "$work/openapi.json"
"$venv/bin/openapi-spec-validator" "$work/openapi.json"

# One worker: with two, CPython 3.11's ast (which hypothesis uses to describe filters)
# raised "AST constructor recursion depth mismatch" from both threads at once.
# Run from the scratch folder: schemathesis may leave files in its working directory.
cd "$work"
status=0
timeout "$TIME_LIMIT_SECS" "$venv/bin/schemathesis" --config-file "$config" \
  run "http://$addr/openapi.json" \
  --seed "$SEED" --max-examples "$MAX_EXAMPLES" --workers 1 \
  --request-timeout 10 --generation-database none --no-color || status=$?
if [ "$status" -ne 0 ]; then
  echo "== schemathesis failed (exit $status); the server's log:"
  tail -n 50 "$work/server.log"
fi
exit "$status"
