#!/usr/bin/env bash
# bench-store.sh runs `agent store` and `thanos store` side by side on the same
# MinIO bucket and prints, for both: time to ready, peak RSS after the initial
# sync and after the query corpus, bytes fetched from the bucket, and Series
# p50/p99 latency per query (small and heavy ones) over the StoreAPI.
#
#   hack/bench-store.sh                      # 6 blocks x 2 clusters x ~10k series
#   BLOCKS=12 SERIES=50000 STEP=15s RUNS=3 hack/bench-store.sh  # 24 blocks x 100k series, 3.8 GB
#   KEEP=1 hack/bench-store.sh               # keep the scratch dir (data reuse: DATA=dir)
#   ONLY=agent PROFILE=20 DATA=dir hack/bench-store.sh # one store only, and a CPU profile
#                                            # of its first 20 s of queries in dir/NAME.cpu.pprof
#
# It is a benchmark, not a test: it never fails on numbers, it prints them.
# Needs the MinIO and Thanos binaries from hack/testbin.sh (built on first use).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BLOCKS=${BLOCKS:-6}
SERIES=${SERIES:-5000}       # per metric (2 metrics) per block
HISTOGRAMS=${HISTOGRAMS:-200}
STEP=${STEP:-30s}            # between samples: 15s doubles the chunk bytes
RUNS=${RUNS:-5}             # per heavy query; small ones run at least 20 times
AGENT_ARGS=${AGENT_ARGS:-}
THANOS_ARGS=${THANOS_ARGS:-}

eval "$("$ROOT/hack/testbin.sh" minio thanos)"
: "${STEVEDORE_MINIO:?}" "${STEVEDORE_THANOS:?}"

WORK=${DATA:-$(mktemp -d /tmp/bench-store.XXXXXX)}
mkdir -p "$WORK"
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	[[ -n "${KEEP:-}" || -n "${DATA:-}" ]] || rm -rf "$WORK"
}
trap cleanup EXIT

freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
log() { echo "bench: $*" >&2; }

log "building agent and benchtool"
(cd "$ROOT" && go build -o "$WORK/agent" ./cmd/agent && go build -o "$WORK/benchtool" ./internal/storegw/benchtool)

MINIO_PORT=$(freeport)
export MINIO_ROOT_USER=bench MINIO_ROOT_PASSWORD=bench-secret-key MINIO_BROWSER=off MINIO_UPDATE=off MINIO_CI_CD=1
"$STEVEDORE_MINIO" server "$WORK/minio" --address "127.0.0.1:$MINIO_PORT" --console-address "127.0.0.1:$(freeport)" --quiet >"$WORK/minio.log" 2>&1 &
pids+=($!)
until curl -sf "http://127.0.0.1:$MINIO_PORT/minio/health/ready" >/dev/null; do sleep 0.2; done

if [[ ! -f "$WORK/range" ]]; then
	log "writing $((BLOCKS * 2)) blocks of ~$((SERIES * 2 + HISTOGRAMS)) series into MinIO"
	mkdir -p "$WORK/gen"
	"$WORK/benchtool" gen -endpoint "127.0.0.1:$MINIO_PORT" -access-key bench -secret-key bench-secret-key \
		-bucket bench -blocks "$BLOCKS" -series "$SERIES" -histograms "$HISTOGRAMS" -step "$STEP" -dir "$WORK/gen" >"$WORK/range"
fi
read -r MINT MAXT <"$WORK/range"
du -sh "$WORK/minio" | awk '{print "bench: bucket size " $1}' >&2

cat >"$WORK/objstore.yaml" <<YAML
type: S3
config:
  bucket: bench
  endpoint: 127.0.0.1:$MINIO_PORT
  access_key: bench
  secret_key: bench-secret-key
  insecure: true
YAML

rss() { awk '/VmRSS/{r=$2} /VmHWM/{h=$2} END{printf "%d/%d", r/1024, h/1024}' "/proc/$1/status"; }
fetched() { curl -s "$1/metrics" | awk '/^thanos_objstore_bucket_operation_fetched_bytes_total/{s+=$2} END{printf "%.1f", s/1048576}'; }

# run NAME CMD...: start a store, wait for readiness, replay the corpus.
run() {
	local name=$1 http=$2 grpc=$3
	shift 3
	rm -rf "$WORK/data-$name"
	local start=$(date +%s.%N)
	"$@" >"$WORK/$name.log" 2>&1 &
	local pid=$!
	pids+=("$pid")
	until curl -sf "http://$http/-/ready" >/dev/null; do
		kill -0 "$pid" 2>/dev/null || { tail -20 "$WORK/$name.log"; exit 1; }
		sleep 0.05
	done
	local ready=$(echo "$(date +%s.%N) - $start" | bc)
	local rss_sync=$(rss "$pid") fetched_sync=$(fetched "http://$http")
	echo "== $name"
	local prof=
	if [[ -n "${PROFILE:-}" ]]; then
		curl -s -o "$WORK/$name.cpu.pprof" "http://$http/debug/pprof/profile?seconds=$PROFILE" &
		prof=$!
	fi
	"$WORK/benchtool" series -addr "$grpc" -runs "$RUNS" -min-time "$MINT" -max-time "$MAXT" | tee "$WORK/$name.series"
	printf '%s ready=%.2fs rss_after_sync(cur/peak MiB)=%s rss_after_queries(cur/peak MiB)=%s fetched_MiB(sync/total)=%s/%s\n' \
		"$name" "$ready" "$rss_sync" "$(rss "$pid")" "$fetched_sync" "$(fetched "http://$http")" | tee -a "$WORK/summary"
	[[ -z "$prof" ]] || wait "$prof" || true
	kill "$pid"
	wait "$pid" 2>/dev/null || true
}

: >"$WORK/summary"
: >"$WORK/thanos.series"
: >"$WORK/agent.series"
TH=127.0.0.1:$(freeport) TG=127.0.0.1:$(freeport)
[[ "${ONLY:-thanos}" != thanos ]] || run thanos "$TH" "$TG" "$STEVEDORE_THANOS" store --data-dir "$WORK/data-thanos" --objstore.config-file "$WORK/objstore.yaml" \
	--http-address "$TH" --grpc-address "$TG" $THANOS_ARGS
AH=127.0.0.1:$(freeport) AG=127.0.0.1:$(freeport)
[[ "${ONLY:-agent}" != agent ]] || run agent "$AH" "$AG" "$WORK/agent" store --data-dir "$WORK/data-agent" --objstore.config-file "$WORK/objstore.yaml" \
	--http-address "$AH" --grpc-address "$AG" $AGENT_ARGS

echo
echo "== summary (RUNS=$RUNS, BLOCKS=$((BLOCKS * 2)), series/block=$((SERIES * 2 + HISTOGRAMS)))"
cat "$WORK/summary"
if [[ -n "${ONLY:-}" ]]; then
	sed 's/^/  /' "$WORK/$ONLY.series"
else
	paste -d'\n' "$WORK/thanos.series" "$WORK/agent.series" | sed 's/^/  /'
fi
