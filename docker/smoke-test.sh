#!/usr/bin/env bash
# Smoke-tests the binary the image ships: the Dockerfile's exact build command,
# then the image's commands (check-config, migrate, serve) with the Kubernetes
# ConfigMap's config, its secrets made up in a temp folder, on a fresh
# PostgreSQL database. No Docker engine needed.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/wechat-identity-target}"
PG_ADMIN="${WECHAT_IDENTITY_TEST_POSTGRES:-postgres://postgres@127.0.0.1:5432/postgres}"

# The Dockerfile's build, to the letter.
cargo build --release --locked -p server --bin wechat-identity
BIN="$CARGO_TARGET_DIR/release/wechat-identity"
echo "binary: $(du -h "$BIN" | cut -f1) (the image adds ~22 MB of distroless cc)"

WORK="$(mktemp -d)"
DB="wi_smoke_$(date +%s)_$$"
SERVER_PID=""
cleanup() {
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true
  psql -q "$PG_ADMIN" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# The ConfigMap's config.toml, with its secrets under $WORK/secrets.
mkdir -p "$WORK/secrets"
python3 - "$WORK" <<'PY'
import sys, re
work = sys.argv[1]
text = open("deploy/k8s/configmap.yaml").read()
body = text.split("config.toml: |\n", 1)[1]
config = "\n".join(line[4:] for line in body.splitlines())
open(f"{work}/config.toml", "w").write(config.replace("/run/secrets/wechat-identity", f"{work}/secrets"))
PY
head -c 32 /dev/urandom | base64 > "$WORK/secrets/encryption-key"
openssl genpkey -algorithm ed25519 -out "$WORK/secrets/jwt-signing-key.pem" 2>/dev/null
echo "smoke-mini-program-secret" > "$WORK/secrets/wx-mini-program-secret"
echo "smoke-official-account-secret" > "$WORK/secrets/wx-official-account-secret"

psql -q "$PG_ADMIN" -c "CREATE DATABASE $DB" >/dev/null
GRPC_PORT=$((20000 + RANDOM % 10000))
HTTP_PORT=$((GRPC_PORT + 1))
ADMIN_PORT=$((GRPC_PORT + 2))
export WECHAT_IDENTITY_CONFIG="$WORK/config.toml"
export DATABASE_URL="${PG_ADMIN%/*}/$DB"
export WECHAT_IDENTITY__SERVER__GRPC_LISTEN="127.0.0.1:$GRPC_PORT"
export WECHAT_IDENTITY__SERVER__HTTP_LISTEN="127.0.0.1:$HTTP_PORT"
export WECHAT_IDENTITY__SERVER__ADMIN_LISTEN="127.0.0.1:$ADMIN_PORT"
export RUST_LOG=info

"$BIN" check-config
"$BIN" migrate
"$BIN" serve > "$WORK/serve.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 50); do
  grep -q "wechat-identity serving" "$WORK/serve.log" && break
  sleep 0.1
done
grep -q "wechat-identity serving" "$WORK/serve.log" || { cat "$WORK/serve.log"; exit 1; }

for service in liveness wechat.identity.v1.IdentityService; do
  out=$(grpcurl -plaintext -d "{\"service\":\"$service\"}" "127.0.0.1:$GRPC_PORT" grpc.health.v1.Health/Check)
  echo "$out" | grep -q '"status": "SERVING"' || { echo "health $service: $out"; exit 1; }
done
curl -fsS "http://127.0.0.1:$HTTP_PORT/readyz" >/dev/null
curl -fsS "http://127.0.0.1:$HTTP_PORT/.well-known/jwks.json" | grep -q '"kty":"OKP"'
# Metrics on the admin port only; the public shim answers 404.
curl -fsS "http://127.0.0.1:$ADMIN_PORT/metrics" | grep -q '^wechat_identity_'
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$HTTP_PORT/metrics")" = 404 ]
# A caller without a key is refused: the ConfigMap configures callers.
if grpcurl -plaintext -d '{"access_token":"x"}' "127.0.0.1:$GRPC_PORT" wechat.identity.v1.IdentityService/VerifyToken 2>"$WORK/err"; then
  echo "an unauthenticated call was accepted"; exit 1
fi
grep -q Unauthenticated "$WORK/err"

kill -TERM "$SERVER_PID"
wait "$SERVER_PID"
SERVER_PID=""
echo "smoke test passed: check-config, migrate, serve, health, readyz, JWKS, metrics on the admin port only, caller auth, SIGTERM exit 0"
