#!/usr/bin/env bash
# bench-dataplane.sh: data-plane throughput (results in BENCHMARKS.md, "Data plane").
# Needs root, iproute2 and iperf3 (scripts/setup.sh).
#
#   scripts/bench-dataplane.sh     env: BENCH_SECS=5 per iperf3 run, BENCH_ROUNDS=3,
#                                  BENCH_TAG=3 / BENCH_NAME=dpbench (the netns lab)
#
# On one namespace lab (scripts/netns-lab.sh), in one run, iperf3 TCP from the ue
# namespace to the PDN host in the pdn namespace, UE->PDN and PDN->UE (-R), through:
#   1. baseline: dataplane-relay (tests/src/bin/dataplane-relay.rs) in ue, epdg and lma:
#      ue TUN -> UDP -> epdg UDP -> UDP -> lma UDP -> SGi TUN -> pdn; the same reads and
#      writes per packet as the real path, without ESP crypto, GRE or session lookups;
#   2. the whole path: ue-emu attach --tun (ESP-in-UDP, AES-256-GCM) -> mag (ESP -> GRE)
#      -> lma (GRE -> SGi TUN) -> pdn, with aaa-stub for the attach.
# Release builds. The two alternate, BENCH_ROUNDS times each (so a load change on a shared
# machine hits both alike); prints every round, then the medians and their ratio
# (whole path / baseline).
set -euo pipefail
cd "$(dirname "$0")/.."

SECS=${BENCH_SECS:-5}
ROUNDS=${BENCH_ROUNDS:-3}
TAG=${BENCH_TAG:-3}
NAME=${BENCH_NAME:-dpbench}
LAB=scripts/netns-lab.sh
BIN=target/release

[[ $(id -u) -eq 0 ]] || { echo "bench-dataplane: needs root (network namespaces)" >&2; exit 1; }
cargo build --release -q -p mag -p lma -p aaa-stub -p ue-emu -p integration-tests --bins

work=$(mktemp -d)
pids=()
stop_all() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
}
cleanup() {
  stop_all
  bash $LAB down "$TAG" "$NAME" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

bash $LAB down "$TAG" "$NAME" >/dev/null
bash $LAB up "$TAG" "$NAME" >/dev/null
eval "$(bash $LAB env "$TAG" "$NAME")"

in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
# start NS LOG CMD...: runs CMD in namespace NS in the background.
start() {
  local ns=$1 log=$2
  shift 2
  ip netns exec "$ns" "$@" >"$work/$log" 2>&1 &
  pids+=($!)
}
wait_for() { # FILE TEXT
  local i
  for i in $(seq 1 300); do
    grep -q "$2" "$work/$1" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "bench-dataplane: $1 never printed '$2':" >&2
  cat "$work/$1" >&2
  exit 1
}
wait_link() { # NS DEV
  local i
  for i in $(seq 1 100); do
    ip -n "$1" link show dev "$2" >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  echo "bench-dataplane: no $2 in $1" >&2
  exit 1
}

# iperf3 through whatever carries ue <-> pdn now; prints receiver Mbit/s.
iperf() { # LABEL [-R]
  local label=$1
  shift
  start "$NS_PDN" "iperf3-server-$label.log" iperf3 -s -1 -B "$PDN_LMA_V4" --forceflush
  wait_for "iperf3-server-$label.log" "Server listening"
  in_ns "$NS_UE" iperf3 -c "$PDN_LMA_V4" -t "$SECS" -f m "$@" >"$work/iperf3-$label.log" 2>&1 || {
    echo "bench-dataplane: iperf3 $label failed:" >&2
    cat "$work/iperf3-$label.log" >&2
    exit 1
  }
  awk '/receiver/ { for (i = 1; i <= NF; i++) if ($i == "Mbits/sec") v = $(i - 1) } END { print v }' \
    "$work/iperf3-$label.log"
}

# 1. Baseline: the relay in ue, epdg and lma. ROUND
baseline() {
  ue4="${UE_POOL_V4%.*/*}.2"
  start "$NS_LMA" relay-lma.log $BIN/dataplane-relay \
    --a "udp:$LMA_EPDG_V4:4600=$EPDG_LMA_V4:4600" --b tun:sgi
  start "$NS_EPDG" relay-epdg.log $BIN/dataplane-relay \
    --a "udp:$EPDG_UE_V4:4500=$UE_EPDG_V4:4500" --b "udp:$EPDG_LMA_V4:4600=$LMA_EPDG_V4:4600"
  start "$NS_UE" relay-ue.log $BIN/dataplane-relay \
    --a tun:uetun --b "udp:$UE_EPDG_V4:4500=$EPDG_UE_V4:4500"
  wait_link "$NS_LMA" sgi
  wait_link "$NS_UE" uetun
  ip -n "$NS_LMA" addr add "$SGI_TUN_V4" dev sgi
  ip -n "$NS_LMA" link set sgi mtu 1500 up
  ip -n "$NS_UE" addr add "$ue4/32" dev uetun
  ip -n "$NS_UE" link set uetun mtu 1400 up
  ip -n "$NS_UE" route add default dev uetun
  in_ns "$NS_UE" ping -c 1 -W 2 "$PDN_LMA_V4" >/dev/null
  base_up+=("$(iperf "base-up-$1")")
  base_down+=("$(iperf "base-down-$1" -R)")
  stop_all
}

# 2. The whole path.
cat >"$work/subscribers.toml" <<EOF
[[subscriber]]
imsi = "001010000000001"
k = "465b5ce8b199b49faa5f0a2ee238a6bc"
opc = "cd63cb71954a9f4e48a5994e37a02baf"
apns = ["internet"]
EOF
cat >"$work/aaa.toml" <<EOF
origin_host = "aaa.epc.mnc001.mcc001.3gppnetwork.org"
origin_realm = "epc.mnc001.mcc001.3gppnetwork.org"
listen = "$AAA_EPDG_V4:3868"
subscribers = "subscribers.toml"
sqn_state = "sqn.toml"
[gateways]
internet = "$LMA_EPDG_V4"
# The ePDG (mag's default Origin-Host) on its link to the AAA.
[[peers]]
origin_host = "epdg.epc.mnc015.mcc234.3gppnetwork.org"
address = "$EPDG_AAA_V4"
EOF
cat >"$work/lma.toml" <<EOF
listen_v4 = "$LMA_EPDG_V4:5436"
ipv4_pool = "$UE_POOL_V4"
ipv6_pool = "$UE_POOL_V6"
allowed_mags = ["$EPDG_LMA_V4"]
[sgi]
tun_name = "sgi"
ipv4 = "$SGI_TUN_V4"
ipv6 = "$SGI_TUN_V6"
mtu = 1500
EOF
cat >"$work/mag.toml" <<EOF
ike_listen = "$EPDG_UE_V4:500"
natt_listen = "$EPDG_UE_V4:4500"
aaa = "$AAA_EPDG_V4:3868"
mh_local = "$EPDG_LMA_V4"
EOF
cat >"$work/ue.toml" <<EOF
imsi = "001010000000001"
mnc_digits = 2
k = "465b5ce8b199b49faa5f0a2ee238a6bc"
opc = "cd63cb71954a9f4e48a5994e37a02baf"
epdg = "$EPDG_UE_V4:500"
local = "$UE_EPDG_V4"
apn = "internet"
timeout_ms = 10000
EOF
# ROUND
whole_path() {
  start "$NS_AAA" aaa.log $BIN/aaa-stub --config "$work/aaa.toml"
  wait_for aaa.log "aaa listening"
  start "$NS_LMA" lma.log $BIN/lma --config "$work/lma.toml"
  wait_for lma.log "lma listening"
  start "$NS_EPDG" mag.log $BIN/mag --config "$work/mag.toml"
  wait_for mag.log "Diameter peer open"
  start "$NS_UE" ue.log $BIN/ue-emu attach --config "$work/ue.toml" --tun uetun
  wait_for ue.log "relaying until"
  in_ns "$NS_UE" ping -c 1 -W 2 "$PDN_LMA_V4" >/dev/null
  full_up+=("$(iperf "full-up-$1")")
  full_down+=("$(iperf "full-down-$1" -R)")
  stop_all
}

base_up=() base_down=() full_up=() full_down=()
for round in $(seq 1 "$ROUNDS"); do
  baseline "$round"
  whole_path "$round"
  echo "round $round: UE->PDN ${full_up[-1]} (baseline ${base_up[-1]})," \
    "PDN->UE ${full_down[-1]} (baseline ${base_down[-1]}) Mbit/s" >&2
done
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

mu=$(median "${full_up[@]}") md=$(median "${full_down[@]}")
bu=$(median "${base_up[@]}") bd=$(median "${base_down[@]}")
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
echo
echo "data plane, iperf3 TCP ${SECS}s, median of $ROUNDS rounds, Mbit/s (receiver), $(nproc) cores"
printf '%-10s %18s %22s %8s\n' direction "whole path" "relay baseline" ratio
printf '%-10s %18s %22s %8s\n' "UE->PDN" "$mu" "$bu" "$(ratio "$mu" "$bu")"
printf '%-10s %18s %22s %8s\n' "PDN->UE" "$md" "$bd" "$(ratio "$md" "$bd")"
