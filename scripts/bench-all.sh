#!/usr/bin/env bash
# bench-all.sh: every benchmark of the performance harness (BENCHMARKS.md), each beside its
# baseline measured in the same run; prints the figures as a Markdown table for
# BENCHMARKS.md and writes them to target/bench-all/results.json.
#
#   scripts/bench-all.sh      env: BENCH_STORM_SECS=10 (each timed storm),
#                                  BENCH_ROUNDS=3 (LMA / echo alternations),
#                                  BENCH_DATAPLANE=1 (also run scripts/bench-dataplane.sh,
#                                  which needs root; 0 skips it)
#
# 1. Crypto bound: cargo bench --bench attach_crypto (network-side crypto of one attach).
# 2. LMA: pbu-load (100 000 distinct bindings, 16 MAG sockets x 32 outstanding) against
#    the real lma, and the same tool against udp-echo replying with the PBA's size,
#    alternating BENCH_ROUNDS times on fresh processes; then the LMA's VmRSS at 0, 100k
#    and 1M bindings.
# 3. Attach storm: aaa-stub ([[range]] of IMSIs), lma and mag on loopback, ue-emu load:
#    the maximum rate (500 UEs attaching and detaching in a closed loop), then half that
#    rate open-loop (p99/p50), then 10 000 UEs held attached for the ePDG's VmRSS.
# 4. The data-plane benchmark (scripts/bench-dataplane.sh), if present.
#
# Addresses: loopback 127.0.160.0/24 (the benchmarks' block). Nodes log at RUST_LOG=warn
# (their per-event info lines cost; the LMA's cost is measured separately in step 2).
set -euo pipefail
cd "$(dirname "$0")/.."

STORM_SECS=${BENCH_STORM_SECS:-10}
ROUNDS=${BENCH_ROUNDS:-3}
BIN=target/release
OUT=target/bench-all
rm -rf "$OUT"
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
START=$(date +%s)

echo "== building (release)" >&2
cargo build --release -q -p mag -p lma -p aaa-stub -p ue-emu -p perf --bins
BUILT=$(date +%s)

PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  PIDS=()
}
trap cleanup EXIT

# start NAME LOGFILE CMD... : starts a node in the background, remembers its pid in $LAST.
start() {
  local log=$1
  shift
  RUST_LOG=${NODE_LOG:-warn} NO_COLOR=1 "$@" >"$log" 2>&1 &
  LAST=$!
  PIDS+=("$LAST")
}

# wait_for FILE PATTERN: until the pattern shows up in the file (30 s).
wait_for() {
  for _ in $(seq 300); do
    grep -q "$2" "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "bench-all: '$2' never appeared in $1:" >&2
  cat "$1" >&2
  exit 1
}

# wait_listen tcp|udp ADDR:PORT: until a socket listens there (30 s). The nodes log at
# warn, so their readiness lines (info) are not there to wait for.
wait_listen() {
  local flag=-ltn
  [[ $1 == udp ]] && flag=-lun
  for _ in $(seq 300); do
    ss -H $flag "src $2" 2>/dev/null | grep -q . && return 0
    sleep 0.1
  done
  echo "bench-all: nothing listens on $1 $2" >&2
  exit 1
}

# wait_peer: until the mag's Diameter connection to the AAA is up (CER/CEA follow at once).
wait_peer() {
  for _ in $(seq 300); do
    ss -H -tn state established "dst 127.0.160.4:3868" 2>/dev/null | grep -q . && { sleep 0.5; return 0; }
    sleep 0.1
  done
  echo "bench-all: the mag never connected to the AAA" >&2
  exit 1
}

# cpu PID: user + system CPU seconds the process has used.
cpu() { awk '{ sub(/.*\) /, ""); print ($12 + $13) / 100 }' "/proc/$1/stat"; }

rss() { awk '/^VmRSS:/ { print $2 * 1024 }' "/proc/$1/status"; }
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# --- machine ------------------------------------------------------------------------
CPU=$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)
MEM_KB=$(awk '/MemTotal/ { print $2 }' /proc/meminfo)
LOAD_BEFORE=$(cut -d' ' -f1 /proc/loadavg)

# --- 1. crypto bound ------------------------------------------------------------------
echo "== crypto bound (cargo bench --bench attach_crypto)" >&2
cargo bench -q -p pmip-common --bench attach_crypto >"$OUT/crypto.txt" 2>&1
CRYPTO=$(awk '/^crypto bound:/ { print $3 }' "$OUT/crypto.txt")
crit() { jq '.median.point_estimate / 1000' "target/criterion/attach_crypto/$1/new/estimates.json"; }
C_DH=$(crit dh_ecp256_keygen_and_shared_secret)
C_PRF=$(crit prf_plus_ike_and_child_keys)
C_AUTH=$(crit auth_compute_and_check)
C_SK=$(crit sk_open_4_seal_4_aes_gcm)
C_AKA=$(crit aka_vector_keys_and_macs)
C_ALL=$(crit whole_attach)

# --- 2. LMA against udp-echo ----------------------------------------------------------
LMA_DIR=$OUT/lma
mkdir -p "$LMA_DIR"
cat >"$LMA_DIR/lma.toml" <<EOF
listen_v4 = "127.0.160.3:5436"
ipv4_pool = "10.0.0.0/11"
ipv6_pool = "2001:db8::/40"
allowed_mags = ["127.0.160.0/24"]
# The PBUs are encoded before the clock starts; their Timestamps may be seconds old.
timestamp_window_ms = 600000
EOF
LOAD_ARGS=(--bindings 100000 --sessions 16 --window 32 --json)
run_lma() { # $1 = log level; prints pbu-load's JSON
  NODE_LOG=$1 start "$LMA_DIR/lma-$1.log" "$BIN/lma" --config "$LMA_DIR/lma.toml"
  local pid=$LAST
  wait_listen udp 127.0.160.3:5436
  "$BIN/pbu-load" --target 127.0.160.3:5436 "${LOAD_ARGS[@]}"
  kill "$pid"
  wait "$pid" 2>/dev/null || true
}
echo "== LMA: pbu-load against lma and udp-echo, $ROUNDS rounds" >&2
run_lma warn >"$LMA_DIR/probe.json"
PBA_SIZE=$(jq .reply_octets "$LMA_DIR/probe.json")
: >"$LMA_DIR/lma.rates"
: >"$LMA_DIR/echo.rates"
for round in $(seq "$ROUNDS"); do
  run_lma warn >"$LMA_DIR/lma-$round.json"
  jq .replies_per_s "$LMA_DIR/lma-$round.json" >>"$LMA_DIR/lma.rates"
  start "$LMA_DIR/echo.log" "$BIN/udp-echo" --listen 127.0.160.5:5436 --reply-size "$PBA_SIZE"
  ECHO_PID=$LAST
  wait_listen udp 127.0.160.5:5436
  "$BIN/pbu-load" --target 127.0.160.5:5436 --echo "${LOAD_ARGS[@]}" >"$LMA_DIR/echo-$round.json"
  jq .replies_per_s "$LMA_DIR/echo-$round.json" >>"$LMA_DIR/echo.rates"
  kill "$ECHO_PID"
  wait "$ECHO_PID" 2>/dev/null || true
done
LMA_RATE=$(median <"$LMA_DIR/lma.rates")
ECHO_RATE=$(median <"$LMA_DIR/echo.rates")
PBU_SIZE=$(jq .pbu_octets "$LMA_DIR/probe.json")
# The same with the LMA's default logging (one info line per PBU) to a file.
LMA_INFO_RATE=$(run_lma info | jq .replies_per_s)

echo "== LMA resident memory at 0, 100k and 1M bindings" >&2
start "$LMA_DIR/lma-mem.log" "$BIN/lma" --config "$LMA_DIR/lma.toml"
LMA_PID=$LAST
wait_listen udp 127.0.160.3:5436
sleep 0.5
"$BIN/pbu-load" --target 127.0.160.3:5436 --bindings 100000 --sessions 16 --rss-pid "$LMA_PID" \
  --json >"$LMA_DIR/mem-100k.json"
"$BIN/pbu-load" --target 127.0.160.3:5436 --first 100000 --bindings 900000 --sessions 64 \
  --rss-pid "$LMA_PID" --json >"$LMA_DIR/mem-1m.json"
LMA_RSS0=$(jq .rss_before "$LMA_DIR/mem-100k.json")
LMA_RSS100K=$(jq .rss_after "$LMA_DIR/mem-100k.json")
LMA_RSS1M=$(jq .rss_after "$LMA_DIR/mem-1m.json")
LMA_1M_RATE=$(jq .replies_per_s "$LMA_DIR/mem-1m.json")
kill "$LMA_PID"
wait "$LMA_PID" 2>/dev/null || true

# --- 3. attach storm --------------------------------------------------------------------
S=$OUT/storm
mkdir -p "$S"
cat >"$S/subscribers.toml" <<EOF
[[range]]
first_imsi = "001010000000001"
count = 1000000
k = "465b5ce8b199b49faa5f0a2ee238a6bc"
opc = "cd63cb71954a9f4e48a5994e37a02baf"
apns = ["internet"]
EOF
cat >"$S/aaa.toml" <<EOF
origin_host = "aaa.epc.mnc001.mcc001.3gppnetwork.org"
origin_realm = "epc.mnc001.mcc001.3gppnetwork.org"
listen = "127.0.160.4:3868"
subscribers = "subscribers.toml"
sqn_state = "sqn.toml"
[gateways]
internet = "127.0.160.3"
# The ePDG (mag's default Origin-Host), connecting from loopback.
[[peers]]
origin_host = "epdg.epc.mnc015.mcc234.3gppnetwork.org"
address = "127.0.0.0/8"
EOF
cat >"$S/mag.toml" <<EOF
ike_listen = "127.0.160.2:500"
natt_listen = "127.0.160.2:4500"
aaa = "127.0.160.4:3868"
mh_local = "127.0.160.2"
origin_realm = "epc.mnc001.mcc001.3gppnetwork.org"
destination_realm = "epc.mnc001.mcc001.3gppnetwork.org"
dns = ["10.0.0.1"]
cookie_threshold = 100000
data_plane = false
EOF
cat >"$S/ue.toml" <<EOF
imsi = "001010000000001"
mnc_digits = 2
k = "465b5ce8b199b49faa5f0a2ee238a6bc"
opc = "cd63cb71954a9f4e48a5994e37a02baf"
epdg = "127.0.160.2:500"
local = "127.0.160.1"
apn = "internet"
timeout_ms = 30000
EOF
cp "$LMA_DIR/lma.toml" "$S/lma.toml"

start_nodes() {
  rm -f "$S/sqn.toml"
  start "$S/aaa.log" "$BIN/aaa-stub" --config "$S/aaa.toml"
  AAA_PID=$LAST
  start "$S/lma.log" "$BIN/lma" --config "$S/lma.toml"
  STORM_LMA_PID=$LAST
  wait_listen tcp 127.0.160.4:3868
  wait_listen udp 127.0.160.3:5436
  start "$S/mag.log" "$BIN/mag" --config "$S/mag.toml"
  MAG_PID=$LAST
  wait_listen udp 127.0.160.2:500
  wait_peer
}
stop_nodes() { cleanup; }

echo "== attach storm: maximum rate (closed loop, 500 UEs, ${STORM_SECS} s)" >&2
start_nodes
CPU0=("$(cpu "$MAG_PID")" "$(cpu "$AAA_PID")" "$(cpu "$STORM_LMA_PID")")
"$BIN/ue-emu" load -c "$S/ue.toml" --ues 500 --rate 0 --duration "$STORM_SECS" --json \
  >"$S/max.json" 2>"$S/max.err" || true
# CPU per attach (each an attach and a detach) of every process of the storm.
CYCLES=$(jq .attached "$S/max.json")
per_attach() { awk -v a="$1" -v b="$2" -v n="$CYCLES" 'BEGIN { printf "%.0f", (b - a) * 1e6 / n }'; }
US_MAG=$(per_attach "${CPU0[0]}" "$(cpu "$MAG_PID")")
US_AAA=$(per_attach "${CPU0[1]}" "$(cpu "$AAA_PID")")
US_LMA=$(per_attach "${CPU0[2]}" "$(cpu "$STORM_LMA_PID")")
US_UE=$(per_attach 0 "$(jq .ue_cpu_s "$S/max.json")")
stop_nodes
MAX_RATE=$(jq .attaches_per_s "$S/max.json")
HALF=$(awk -v r="$MAX_RATE" 'BEGIN { printf "%.0f", r / 2 }')

# Open loop, single pass: every UE holds its socket (and its session) until the run
# ends, so the run is cut short rather than let ue-emu run out of file descriptors
# (EMFILE would count as failed attaches that the ePDG never saw).
NOFILE=$(ulimit -n)
HALF_SECS=$(awk -v r="$HALF" -v s="$STORM_SECS" -v n="$NOFILE" \
  'BEGIN { m = (n - 2000) / r; printf "%d", (m < s ? m : s) }')
echo "== attach storm: half the maximum, $HALF/s open loop, ${HALF_SECS} s (open files: $NOFILE)" >&2
start_nodes
HALF_UES=$(awk -v r="$HALF" -v s="$HALF_SECS" 'BEGIN { printf "%.0f", r * s }')
"$BIN/ue-emu" load -c "$S/ue.toml" --ues "$HALF_UES" --rate "$HALF" --json \
  >"$S/half.json" 2>"$S/half.err" || true
stop_nodes

echo "== ePDG resident memory at 0 and 10 000 attached UEs" >&2
start_nodes
sleep 0.5
MAG_RSS0=$(rss "$MAG_PID")
"$BIN/ue-emu" load -c "$S/ue.toml" --ues 10000 --rate "$HALF" --hold 6 --json \
  >"$S/hold.json" 2>"$S/hold.err" &
UE_PID=$!
wait_for "$S/hold.err" "holding"
sleep 3
MAG_RSS10K=$(rss "$MAG_PID")
MAG_HELD=$(grep -o 'holding [0-9]*' "$S/hold.err" | awk '{ print $2 }')
wait "$UE_PID" || true
stop_nodes
STORM_DONE=$(date +%s)

# --- 4. data plane --------------------------------------------------------------------
if [[ ${BENCH_DATAPLANE:-1} == 1 && -x scripts/bench-dataplane.sh && $(id -u) -eq 0 ]]; then
  echo "== data plane (scripts/bench-dataplane.sh)" >&2
  scripts/bench-dataplane.sh >"$OUT/dataplane.txt" 2>&1 || echo "bench-dataplane.sh failed: see $OUT/dataplane.txt" >&2
fi
END=$(date +%s)

# --- report ---------------------------------------------------------------------------
jq -n \
  --arg cpu "$CPU" --argjson nproc "$(nproc)" --argjson mem_kb "$MEM_KB" \
  --arg load_before "$LOAD_BEFORE" --arg load_after "$(cut -d' ' -f1 /proc/loadavg)" \
  --argjson crypto "$CRYPTO" --argjson c_dh "$C_DH" --argjson c_prf "$C_PRF" \
  --argjson c_auth "$C_AUTH" --argjson c_sk "$C_SK" --argjson c_aka "$C_AKA" \
  --argjson c_all "$C_ALL" \
  --argjson lma_rate "$LMA_RATE" --argjson echo_rate "$ECHO_RATE" \
  --argjson lma_info_rate "$LMA_INFO_RATE" --argjson lma_1m_rate "$LMA_1M_RATE" \
  --argjson pbu_size "$PBU_SIZE" --argjson pba_size "$PBA_SIZE" \
  --argjson lma_rss0 "$LMA_RSS0" --argjson lma_rss100k "$LMA_RSS100K" \
  --argjson lma_rss1m "$LMA_RSS1M" \
  --argjson mag_rss0 "$MAG_RSS0" --argjson mag_rss10k "$MAG_RSS10K" \
  --argjson mag_held "${MAG_HELD:-0}" \
  --argjson us_mag "$US_MAG" --argjson us_aaa "$US_AAA" --argjson us_lma "$US_LMA" \
  --argjson us_ue "$US_UE" \
  --slurpfile max "$S/max.json" --slurpfile half "$S/half.json" --slurpfile hold "$S/hold.json" \
  --argjson build_s $((BUILT - START)) --argjson bench_s $((END - BUILT)) \
  --argjson storm_s $((STORM_DONE - BUILT)) \
  '{machine: {cpu: $cpu, nproc: $nproc, mem_kb: $mem_kb, load_before: $load_before,
     load_after: $load_after},
    crypto: {attaches_per_s_per_core: $crypto, us: {dh: $c_dh, prf_plus: $c_prf,
     auth: $c_auth, sk: $c_sk, aka: $c_aka, whole: $c_all}},
    lma: {pbu_per_s: $lma_rate, echo_per_s: $echo_rate, ratio: ($lma_rate / $echo_rate),
     pbu_per_s_info_log: $lma_info_rate, pbu_per_s_100k_to_1m: $lma_1m_rate,
     pbu_octets: $pbu_size, pba_octets: $pba_size,
     rss: {b0: $lma_rss0, b100k: $lma_rss100k, b1m: $lma_rss1m},
     bytes_per_binding_100k: (($lma_rss100k - $lma_rss0) / 100000),
     bytes_per_binding_1m: (($lma_rss1m - $lma_rss0) / 1000000)},
    epdg: {rss0: $mag_rss0, rss_held: $mag_rss10k, held: $mag_held,
     bytes_per_ue: (if $mag_held > 0 then ($mag_rss10k - $mag_rss0) / $mag_held else null end)},
    storm: {max: $max[0], half: $half[0], hold: $hold[0],
     cpu_us_per_attach: {mag: $us_mag, aaa: $us_aaa, lma: $us_lma, ue_emu: $us_ue},
     max_ratio_to_crypto_bound: ($max[0].attaches_per_s / $crypto),
     half_p99_over_p50: ($half[0].latency_ms.p99 / $half[0].latency_ms.p50)},
    seconds: {build: $build_s, benchmarks: $bench_s, to_end_of_storm: $storm_s}}' \
  >"$OUT/results.json"

jq -r '
  def f: . * 100 | round / 100;
  "| figure | value | baseline (same run) | ratio | target |",
  "|---|---:|---:|---:|---|",
  "| crypto bound, network side of one attach | \(.crypto.us.whole | f) us = \(.crypto.attaches_per_s_per_core) attaches/s/core | | | |",
  "| attach storm, maximum (500 UEs closed loop) | \(.storm.max.attaches_per_s) attaches/s, success \(.storm.max.success_rate) | crypto bound \(.crypto.attaches_per_s_per_core)/s/core | \(.storm.max_ratio_to_crypto_bound | . * 1000 | round / 1000) | >= 0.5 (2 cores) |",
  "| CPU per attach + detach in the closed loop: mag / aaa-stub / lma / ue-emu | \(.storm.cpu_us_per_attach.mag) / \(.storm.cpu_us_per_attach.aaa) / \(.storm.cpu_us_per_attach.lma) / \(.storm.cpu_us_per_attach.ue_emu) us | crypto bound \(.crypto.us.whole | f) us | mag / crypto \(.storm.cpu_us_per_attach.mag / .crypto.us.whole | f) | |",
  "| attach storm at half the maximum (\(.storm.half.rate_requested)/s) | p50 \(.storm.half.latency_ms.p50) ms, p90 \(.storm.half.latency_ms.p90), p99 \(.storm.half.latency_ms.p99), max \(.storm.half.latency_ms.max); \(.storm.half.attaches_per_s)/s, success \(.storm.half.success_rate) | | p99/p50 \(.storm.half_p99_over_p50 | f) | <= 3 |",
  "| LMA PBU->PBA (100k bindings, 16 MAGs x 32) | \(.lma.pbu_per_s) /s | udp-echo \(.lma.echo_per_s) /s | \(.lma.ratio | f) | >= 0.5 |",
  "| LMA PBU->PBA, info log per PBU to a file | \(.lma.pbu_per_s_info_log) /s | udp-echo \(.lma.echo_per_s) /s | \(.lma.pbu_per_s_info_log / .lma.echo_per_s | f) | |",
  "| LMA PBU->PBA, bindings 100k to 1M (64 MAGs) | \(.lma.pbu_per_s_100k_to_1m) /s | | | |",
  "| LMA VmRSS at 0 / 100k / 1M bindings | \(.lma.rss.b0) / \(.lma.rss.b100k) / \(.lma.rss.b1m) B | | \(.lma.bytes_per_binding_100k | round) / \(.lma.bytes_per_binding_1m | round) B per binding | <= 1024 at 1M |",
  "| ePDG VmRSS at 0 / \(.epdg.held) attached UEs | \(.epdg.rss0) / \(.epdg.rss_held) B | | \(.epdg.bytes_per_ue | round) B per UE | <= 8192 |",
  "",
  "machine: \(.machine.nproc) x \(.machine.cpu), \(.machine.mem_kb / 1048576 | f) GiB; load average \(.machine.load_before) before, \(.machine.load_after) after",
  "time: build \(.seconds.build) s, benchmarks \(.seconds.benchmarks) s"' "$OUT/results.json"
echo "(JSON: $OUT/results.json; logs and raw outputs beside it)" >&2
