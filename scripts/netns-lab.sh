#!/usr/bin/env bash
# netns-lab.sh: the network-namespace topology of the data-plane tests and benchmark
# (docs/testing.md, "The namespace lab"; needs root and iproute2).
#
#   scripts/netns-lab.sh up     TAG [NAME]   create (idempotent: creates only what is missing)
#   scripts/netns-lab.sh down   TAG [NAME]   kill every process in the namespaces, delete them
#                                            (and with them every veth); nothing is left
#   scripts/netns-lab.sh status TAG [NAME]   show namespaces, links, addresses, processes;
#                                            exit 0 when complete, 1 otherwise
#   scripts/netns-lab.sh env    TAG [NAME]   print the address plan as KEY=VALUE lines
#                                            (what tests/src/lab.rs reads; no root needed)
#
# TAG (0-15) picks the address block below; NAME (default "lab$TAG", letters, digits,
# '-' and '_') prefixes the namespace names, so concurrent labs coexist: give each its own
# NAME (tests use one with their pid) and, to keep addresses apart in captures, its own TAG.
#
# Namespaces ("$NAME-<node>"):  ue  epdg  lma  pdn  aaa
#
#        [ue] --swu-- [epdg] --s2b-- [lma] ==SGi TUN (the lma process)==> --sgi-- [pdn]
#                        |
#                       swm
#                        |
#                      [aaa]
#
# Every link is one veth pair created directly inside its two namespaces (nothing ever
# lives in the root namespace); in namespace X the end toward Y is named "Y" (in "lma",
# "epdg" is the interface toward the ePDG). MTU 1500 everywhere.
#
# Address plan: IPv4 10.200.0.0/16 and IPv6 fd00:200::/32; tag T owns
# 10.200.(16T).0/20 and fd00:200:T::/48. Link slot S (1-7) is 10.200.(16T+S).0/24 and
# fd00:200:T:S::/64; on link "A:B:S" node A has host .1 / ::1 and node B .2 / ::2.
#
#   slot link        A      B      A's address          B's address
#   1    swu         ue     epdg   10.200.(16T+1).1     10.200.(16T+1).2      (IKE, ESP-in-UDP)
#   2    s2b         epdg   lma    10.200.(16T+2).1     10.200.(16T+2).2      (PMIPv6, GRE)
#   3    swm         epdg   aaa    10.200.(16T+3).1     10.200.(16T+3).2      (Diameter)
#   4    sgi         lma    pdn    10.200.(16T+4).1     10.200.(16T+4).2      (the PDN host)
#   IPv6 likewise: fd00:200:T:S::1 and fd00:200:T:S::2 (added with nodad).
#
# Roaming variant (docs/attach.md; NETNS_LAB_ROAMING=1 in the environment of up/env/status):
# two more namespaces, "vlma" (the visited gateway, lma with [chaining]) and "vaaa" (the
# visited AAA, relaying to the home AAA in "aaa"); "lma" and "aaa" are then the home
# gateway and the home AAA, and the ePDG's gateway and AAA are the visited ones.
#
#        [ue] -- [epdg] --s2b-v-- [vlma] --s8-- [lma] ==SGi==> [pdn]
#                   |
#                 swm-v
#                   |
#                [vaaa] --relay-- [aaa]
#
#   slot link        A      B      A's address          B's address
#   5    s2b-v       epdg   vlma   10.200.(16T+5).1     10.200.(16T+5).2      (PMIPv6, GRE)
#   6    s8          vlma   lma    10.200.(16T+6).1     10.200.(16T+6).2      (chained PMIPv6, GRE)
#   7    swm-v       epdg   vaaa   10.200.(16T+7).1     10.200.(16T+7).2      (Diameter)
#   0    relay       vaaa   aaa    10.200.(16T+0).1     10.200.(16T+0).2      (Diameter, realm routing)
#   The visited gateway's own pool (its subscribers):
#   VISITED_POOL_V4     10.200.(16T+13).0/24         (vlma ipv4_pool; no TUN there)
#   VISITED_POOL_V6     fd00:200:T:200::/57          (vlma ipv6_pool)
# `down` always removes the roaming namespaces too, whatever the environment says.
#
# Addresses the lma process is configured with (nothing here creates the TUN; the lma
# does, with these addresses, which routes the pools into it):
#   UE IPv4 pool        10.200.(16T+8).0/22          (LMA ipv4_pool)
#   SGi TUN IPv4        10.200.(16T+12).1/21         (LMA [sgi] ipv4; covers the pool)
#   UE IPv6 pool        fd00:200:T:100::/57          (LMA ipv6_pool, one /64 per UE)
#   SGi TUN IPv6        fd00:200:T:180::1/56         (LMA [sgi] ipv6; covers the pool)
# 10.200.(16T+13..15).0 and fd00:200:T:200::/55 and up are free for later use.
#
# Routing: the lma namespace forwards IPv4 and IPv6 (TUN <-> sgi); the pdn namespace
# routes the UE pools (IPv4 /21, IPv6 /56) back via the lma's sgi address; the ue
# namespace has no default route (ue-emu --tun adds its own through the tunnel).
set -euo pipefail

usage() {
  sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
}

[[ $# -ge 2 ]] || usage
CMD=$1
TAG=$2
NAME=${3:-lab$TAG}
[[ $TAG =~ ^([0-9]|1[0-5])$ ]] || { echo "netns-lab: TAG must be 0-15, not '$TAG'" >&2; exit 2; }
[[ $NAME =~ ^[A-Za-z0-9_-]{1,40}$ ]] || { echo "netns-lab: bad NAME '$NAME'" >&2; exit 2; }

NODES=(ue epdg lma pdn aaa)
# "A:B:SLOT" (see the table above).
LINKS=(ue:epdg:1 epdg:lma:2 epdg:aaa:3 lma:pdn:4)
ROAMING_NODES=(vlma vaaa)
if [[ ${NETNS_LAB_ROAMING:-0} == 1 ]]; then
  NODES+=("${ROAMING_NODES[@]}")
  LINKS+=(epdg:vlma:5 vlma:lma:6 epdg:vaaa:7 vaaa:aaa:0)
fi

ns() { echo "$NAME-$1"; }
v4() { echo "10.200.$((16 * TAG + $1)).$2"; }   # v4 SLOT HOST
v6() { printf 'fd00:200:%x:%x::%x\n' "$TAG" "$1" "$2"; }   # v6 SLOT HOST

print_env() {
  echo "LAB_NAME=$NAME"
  echo "LAB_TAG=$TAG"
  for n in "${NODES[@]}"; do echo "NS_${n^^}=$(ns "$n")"; done
  local link a b s
  for link in "${LINKS[@]}"; do
    IFS=: read -r a b s <<<"$link"
    # <NODE>_<PEER>_V4: NODE's address on its link to PEER.
    echo "${a^^}_${b^^}_V4=$(v4 "$s" 1)"
    echo "${b^^}_${a^^}_V4=$(v4 "$s" 2)"
    echo "${a^^}_${b^^}_V6=$(v6 "$s" 1)"
    echo "${b^^}_${a^^}_V6=$(v6 "$s" 2)"
  done
  echo "UE_POOL_V4=$(v4 8 0)/22"
  echo "SGI_TUN_V4=$(v4 12 1)/21"
  echo "UE_ROUTE_V4=$(v4 8 0)/21"
  printf 'UE_POOL_V6=fd00:200:%x:100::/57\n' "$TAG"
  printf 'SGI_TUN_V6=fd00:200:%x:180::1/56\n' "$TAG"
  printf 'UE_ROUTE_V6=fd00:200:%x:100::/56\n' "$TAG"
  if [[ ${NETNS_LAB_ROAMING:-0} == 1 ]]; then
    echo "VISITED_POOL_V4=$(v4 13 0)/24"
    printf 'VISITED_POOL_V6=fd00:200:%x:200::/57\n' "$TAG"
  fi
}

have_ns() { [[ -e /run/netns/$1 ]]; }
have_link() { ip -n "$1" link show dev "$2" >/dev/null 2>&1; }

up() {
  local n link a b s
  for n in "${NODES[@]}"; do
    have_ns "$(ns "$n")" || ip netns add "$(ns "$n")"
    ip -n "$(ns "$n")" link set lo up
  done
  for link in "${LINKS[@]}"; do
    IFS=: read -r a b s <<<"$link"
    if ! have_link "$(ns "$a")" "$b"; then
      # A half-made pair (one end only) cannot happen: veth pairs are created and deleted
      # together.
      ip link add "$b" netns "$(ns "$a")" mtu 1500 type veth peer name "$a" netns "$(ns "$b")" mtu 1500
    fi
    ip -n "$(ns "$a")" addr replace "$(v4 "$s" 1)/24" dev "$b"
    ip -n "$(ns "$b")" addr replace "$(v4 "$s" 2)/24" dev "$a"
    ip -n "$(ns "$a")" -6 addr replace "$(v6 "$s" 1)/64" dev "$b" nodad
    ip -n "$(ns "$b")" -6 addr replace "$(v6 "$s" 2)/64" dev "$a" nodad
    ip -n "$(ns "$a")" link set "$b" up
    ip -n "$(ns "$b")" link set "$a" up
  done
  # The lma forwards between its SGi TUN and the pdn link. Written to /proc/sys (the
  # namespace's own net.* values) rather than with sysctl(8): procps is not installed
  # everywhere (minimal Debian images) and scripts/setup.sh does not install it.
  ip netns exec "$(ns lma)" sh -c \
    'echo 1 >/proc/sys/net/ipv4/ip_forward && echo 1 >/proc/sys/net/ipv6/conf/all/forwarding'
  # The PDN host reaches the UE pools through the lma.
  ip -n "$(ns pdn)" route replace "$(v4 8 0)/21" via "$(v4 4 1)"
  ip -n "$(ns pdn)" -6 route replace "$(printf 'fd00:200:%x:100::/56' "$TAG")" via "$(v6 4 1)"
  echo "netns-lab: $NAME (tag $TAG) is up"
}

down() {
  local n pids pass
  # The roaming namespaces go too, whether or not this run was told about them.
  local n_roaming
  for n_roaming in "${ROAMING_NODES[@]}"; do
    [[ " ${NODES[*]} " == *" $n_roaming "* ]] || NODES+=("$n_roaming")
  done
  # Processes first: a namespace whose processes live on keeps its interfaces.
  for pass in TERM TERM TERM KILL; do
    pids=""
    for n in "${NODES[@]}"; do
      have_ns "$(ns "$n")" && pids+=" $(ip netns pids "$(ns "$n")" 2>/dev/null | tr '\n' ' ')"
    done
    [[ -n ${pids// /} ]] || break
    # shellcheck disable=SC2086
    kill -s "$pass" $pids 2>/dev/null || true
    sleep 1
  done
  for n in "${NODES[@]}"; do
    if have_ns "$(ns "$n")"; then
      ip netns del "$(ns "$n")"
    fi
  done
  echo "netns-lab: $NAME (tag $TAG) is down"
}

status() {
  local n complete=0
  for n in "${NODES[@]}"; do
    if have_ns "$(ns "$n")"; then
      echo "== $(ns "$n")"
      ip -n "$(ns "$n")" -brief addr
      local pids
      pids=$(ip netns pids "$(ns "$n")" 2>/dev/null | tr '\n' ' ')
      [[ -z ${pids// /} ]] || echo "processes: $pids"
    else
      echo "== $(ns "$n"): missing"
      complete=1
    fi
  done
  return $complete
}

case $CMD in
  env) print_env ;;
  up) up ;;
  down) down ;;
  status) status ;;
  *) usage ;;
esac
