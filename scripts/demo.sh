#!/usr/bin/env bash
# A whole local Outpost fleet: MinIO, the coordinator, one relay and three
# agents, doing the job an admin does with the CLI. State lives in .demo/
# (git-ignored). DEMO_ONESHOT=1 exits 0 after success, non-zero with the
# reason otherwise. Run it through `make demo`, which builds ./bin first.
set -euo pipefail
cd "$(dirname "$0")/.."
TOP=$PWD
BIN=$TOP/bin
DEMO=$TOP/.demo
HTTP_PORT=${DEMO_HTTP_PORT:-8020}
HTTPS_PORT=${DEMO_HTTPS_PORT:-8363}
QUIC_PORT=${DEMO_QUIC_PORT:-8027}
RELAY_PORT=${DEMO_RELAY_PORT:-8090}
MINIO_PORT=${DEMO_MINIO_PORT:-9000}
AGENTS=3
DEADLINE=${DEMO_TIMEOUT:-150s}

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
fail() { printf 'demo failed: %s\n' "$*" >&2; for f in "$DEMO"/logs/*.log; do [ -f "$f" ] && { echo "--- last lines of $f" >&2; tail -n 15 "$f" >&2; }; done; exit 1; }

for b in minio outpost-coordinator outpost-relay outpost-agent outpost outpost-plugin-package; do
  [ -x "$BIN/$b" ] || fail "$BIN/$b is missing: run make demo (it builds everything)"
done

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_http() { # url what [curl flags...]
  local url=$1 what=$2; shift 2
  for _ in $(seq 1 150); do curl -fsS -o /dev/null "$@" "$url" 2>/dev/null && return 0; sleep 0.2; done
  fail "$what did not come up at $url"
}

rm -rf "$DEMO"
mkdir -p "$DEMO/logs"

say "starting MinIO on 127.0.0.1:$MINIO_PORT"
export MINIO_ROOT_USER=outpost-demo MINIO_ROOT_PASSWORD=outpost-demo-secret MINIO_BROWSER=off
"$BIN/minio" server --quiet --address "127.0.0.1:$MINIO_PORT" "$DEMO/minio" >"$DEMO/logs/minio.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$MINIO_PORT/minio/health/live" MinIO

say "starting the coordinator (admin API on https://127.0.0.1:$HTTPS_PORT and plain on 127.0.0.1:$HTTP_PORT, QUIC on 127.0.0.1:$QUIC_PORT/udp)"
OUTPOST_COORDINATOR_FILE_SERVER_ENDPOINT=127.0.0.1:$MINIO_PORT \
OUTPOST_COORDINATOR_FILE_SERVER_ACCESS_KEY=$MINIO_ROOT_USER \
OUTPOST_COORDINATOR_FILE_SERVER_SECRET_KEY=$MINIO_ROOT_PASSWORD \
  "$BIN/outpost-coordinator" --data-dir "$DEMO/coordinator" --http-addr "127.0.0.1:$HTTP_PORT" --https-addr "127.0.0.1:$HTTPS_PORT" --quic-addr "127.0.0.1:$QUIC_PORT" \
  >"$DEMO/logs/coordinator.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 150); do [ -s "$DEMO/coordinator/ca/ca.crt" ] && break; sleep 0.1; done
# Everything below talks HTTPS, trusting the coordinator's own CA: curl by
# its certificate file, the CLI and the members by its fingerprint.
CA_CRT=$DEMO/coordinator/ca/ca.crt
wait_http "https://127.0.0.1:$HTTPS_PORT/healthz" "the coordinator" --cacert "$CA_CRT"
for _ in $(seq 1 50); do [ -s "$DEMO/coordinator/admin.token" ] && break; sleep 0.1; done
FINGERPRINT=$(cat "$DEMO/coordinator/ca.fingerprint")
export OUTPOST_SERVER=https://127.0.0.1:$HTTPS_PORT
export OUTPOST_CA_FINGERPRINT=$FINGERPRINT
export OUTPOST_TOKEN_FILE=$DEMO/coordinator/admin.token
outpost() { "$BIN/outpost" "$@"; }

say "creating the office 'hq' in relay mode"
outpost office add hq --description "Head office demo" --location "Loopback" \
  --mode relay --relay "https://127.0.0.1:$RELAY_PORT" --interval 10s

say "enrolling the relay"
RELAY_TOKEN=$(outpost token create --office hq --role relay --ttl 1h 2>/dev/null)
cat >"$DEMO/relay.yaml" <<YAML
coordinator: 127.0.0.1:$QUIC_PORT
enroll_token: $RELAY_TOKEN
ca_fingerprint: $FINGERPRINT
data_dir: $DEMO/relay
listen: 127.0.0.1:$RELAY_PORT
advertise_url: https://127.0.0.1:$RELAY_PORT
gossip_bind: 127.0.0.1:7950
YAML
"$BIN/outpost-relay" --config "$DEMO/relay.yaml" >"$DEMO/logs/relay.log" 2>&1 &
pids+=($!)
# HTTPS with a serving certificate the coordinator's CA issues once the
# relay has enrolled.
wait_http "https://127.0.0.1:$RELAY_PORT/healthz" "the relay" --cacert "$CA_CRT"

say "starting $AGENTS agents"
AGENT_TOKEN=$(outpost token create --office hq --uses $AGENTS --ttl 1h 2>/dev/null)
for i in $(seq 1 $AGENTS); do
  mkdir -p "$DEMO/agent-$i/root"
  cat >"$DEMO/agent-$i.yaml" <<YAML
coordinator: 127.0.0.1:$QUIC_PORT
enroll_token: $AGENT_TOKEN
ca_fingerprint: $FINGERPRINT
data_dir: $DEMO/agent-$i/data
root: $DEMO/agent-$i/root
plugins_dir: $BIN
hostname: demo-pc-$i
gossip_bind: 127.0.0.1:$((7950 + i))
fast: true
YAML
  "$BIN/outpost-agent" --config "$DEMO/agent-$i.yaml" >"$DEMO/logs/agent-$i.log" 2>&1 &
  pids+=($!)
done

say "pushing the sample package to the file server"
SHA=$(outpost artifact push testdata/packages/hello-1.0.0.tar.gz)
echo "sha256 $SHA"

say "applying a policy to 'hq': package hello 1.0.0 present"
cat >"$DEMO/policy.yaml" <<YAML
items:
  - kind: package
    name: hello
    version: "1.0.0"
    artifact: $SHA
    state: present
YAML
outpost policy apply --office hq "$DEMO/policy.yaml"

say "waiting until all $AGENTS agents report it installed"
outpost agent wait --office hq --count $AGENTS --timeout "$DEADLINE" || fail "the agents did not all become compliant"
for i in $(seq 1 $AGENTS); do
  [ -x "$DEMO/agent-$i/root/opt/hello/bin/hello" ] || fail "agent $i reports compliant but /opt/hello/bin/hello is not in its root"
done

echo
outpost agent list --office hq
echo
cat <<TXT
Outpost demo is up:
  web console   $OUTPOST_SERVER/ui/   (sign in with the token in $OUTPOST_TOKEN_FILE)
                (or http://127.0.0.1:$HTTP_PORT/ui/ on this machine, if the browser does not trust $CA_CRT)
  admin API     $OUTPOST_SERVER/v1/   (token: $OUTPOST_TOKEN_FILE)
  metrics       $OUTPOST_SERVER/metrics
  relay         https://127.0.0.1:$RELAY_PORT/healthz   (CA: $CA_CRT)
  file server   http://127.0.0.1:$MINIO_PORT (MinIO)
  agent roots   $DEMO/agent-*/root     logs in $DEMO/logs
Try: OUTPOST_SERVER=$OUTPOST_SERVER OUTPOST_CA_FINGERPRINT=$FINGERPRINT OUTPOST_TOKEN_FILE=$OUTPOST_TOKEN_FILE bin/outpost agent list
TXT
if [ "${DEMO_ONESHOT:-}" = 1 ]; then
  say "DEMO_ONESHOT=1: success, stopping the fleet"
  exit 0
fi
say "running until Ctrl-C"
wait
