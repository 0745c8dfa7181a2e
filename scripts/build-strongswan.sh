#!/usr/bin/env bash
# Builds strongSwan (charon + swanctl with a software USIM: eap-aka-3gpp) from Debian's source
# package into a cache folder outside the git tree, for the interop test
# tests/tests/strongswan_interop.rs. Debian's binary packages have no eap-aka-3gpp plugin.
#
# Idempotent and non-interactive: when the prefix already holds a build made with the same
# version and plugin list, and charon/swanctl from it run, nothing is done.
#
#   STRONGSWAN_PREFIX   install prefix (default /opt/pmip-strongswan)
#   STRONGSWAN_SRC_DIR  where the source is unpacked and built (default ~/.cache/pmip-strongswan)
set -euo pipefail

prefix="${STRONGSWAN_PREFIX:-/opt/pmip-strongswan}"
src_root="${STRONGSWAN_SRC_DIR:-${HOME:-/root}/.cache/pmip-strongswan}"
# What the interop test needs (the eap-aka-3gpp software USIM, kernel-libipsec, swanctl over
# vici, the suites phones offer) plus kdf: without it charon 5.9.8 has no prf+ (KDF_PRF)
# with this OpenSSL and aborts every IKE SA after IKE_SA_INIT ("key derivation failed").
plugins=(charon swanctl vici ikev2 nonce random openssl pem x509 pubkey pkcs1 pkcs8
  constraints revocation eap-aka eap-aka-3gpp eap-identity kernel-libipsec libipsec
  kernel-netlink socket-default updown sha1 sha2 hmac kdf aes gcm resolve attr)
stamp="$prefix/.pmip-build"
wanted_stamp="piddir=$prefix/run plugins=${plugins[*]}"

log() { echo "build-strongswan: $*"; }

# Namespaces, mounts, packages and the install prefix need root: directly, or through sudo,
# which must not prompt.
as_root=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    as_root=(sudo -n)
  else
    echo "build-strongswan: needs root (or password-less sudo)" >&2
    exit 1
  fi
fi

# Starts the built charon in a throw-away network namespace (its pid file directory
# bind-mounted from a temp folder, its vici socket there too) and checks that swanctl
# reaches it and that it loaded every plugin of the list, eap-aka-3gpp and kernel-libipsec
# among them.
works() {
  [ -x "$prefix/sbin/swanctl" ] && [ -x "$prefix/libexec/ipsec/charon" ] || return 1
  [ -d "$prefix/run" ] || return 1
  local ns="pmipss$$" tmp ok=1 loaded p
  tmp="$(mktemp -d)"
  cat >"$tmp/strongswan.conf" <<CONF
charon {
  filelog { log { path = $tmp/charon.log
      default = 1 } }
  plugins { vici { socket = unix://$tmp/charon.vici } }
}
CONF
  "${as_root[@]}" ip netns del "$ns" 2>/dev/null || true
  if "${as_root[@]}" ip netns add "$ns"; then
    "${as_root[@]}" ip netns exec "$ns" sh -c 'mount --bind "$1" "$2/run" && exec env STRONGSWAN_CONF="$1/strongswan.conf" "$2/libexec/ipsec/charon"' \
      sh "$tmp" "$prefix" >/dev/null 2>&1 &
    local charon_pid=$!
    for _ in $(seq 1 100); do
      loaded="$("${as_root[@]}" "$prefix/sbin/swanctl" --stats --uri "unix://$tmp/charon.vici" 2>/dev/null | grep '^loaded plugins:')" && break
      sleep 0.1
    done
    "${as_root[@]}" pkill -TERM -P "$charon_pid" 2>/dev/null || true
    kill "$charon_pid" 2>/dev/null || true
    wait "$charon_pid" 2>/dev/null || true
    "${as_root[@]}" ip netns del "$ns" 2>/dev/null || true
    if [ -n "${loaded:-}" ]; then
      ok=0
      for p in "${plugins[@]}"; do
        # charon, swanctl, libipsec and ikev2 are programs or parts of libcharon, not plugins.
        case "$p" in charon | swanctl | libipsec | ikev2) continue ;; esac
        if ! grep -qw -- "$p" <<<"$loaded"; then
          log "charon did not load plugin $p"
          ok=1
        fi
      done
    else
      log "charon from $prefix did not answer swanctl; its log:"
      cat "$tmp/charon.log" >&2 2>/dev/null || true
    fi
  fi
  "${as_root[@]}" rm -rf "$tmp"
  return "$ok"
}

if [ -f "$stamp" ] && [ "$(sed -n 2p "$stamp")" = "$wanted_stamp" ] && works; then
  log "$(head -n 1 "$stamp") already built in $prefix"
  exit 0
fi

# A deb-src entry for every Debian deb entry of the machine's own apt sources (deb822
# .sources files and one-line sources.list), so `apt-get source` uses the same mirror.
src_list=/etc/apt/sources.list.d/pmip-strongswan-src.sources
if ! apt-get source --print-uris strongswan >/dev/null 2>&1; then
  tmp="$(mktemp)"
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -e "$f" ] && [ "$f" != "$src_list" ] || continue
    # Copy each stanza whose Types include "deb" and whose URIs point at Debian, as deb-src.
    awk 'BEGIN { RS = ""; ORS = "\n\n" }
      /(^|\n)Types:[^\n]*deb([ \t]|\n|$)/ && /(^|\n)URIs:[^\n]*debian/ {
        gsub(/(^|\n)Types:[^\n]*/, "\nTypes: deb-src"); sub(/^\n/, ""); print
      }' "$f" >>"$tmp"
  done
  if [ -f /etc/apt/sources.list ]; then
    grep -E '^[[:space:]]*deb[[:space:]].*debian' /etc/apt/sources.list |
      sed -E 's/^[[:space:]]*deb[[:space:]]/deb-src /' |
      awk '{ print "Types: deb-src\nURIs: " $2 "\nSuites: " $3 "\nComponents: " substr($0, index($0, $4)) "\n" }' \
        >>"$tmp" || true
  fi
  if [ ! -s "$tmp" ]; then
    echo "build-strongswan: no Debian deb entry found in the apt sources to derive deb-src from" >&2
    exit 1
  fi
  log "adding deb-src entries in $src_list"
  "${as_root[@]}" install -m 0644 "$tmp" "$src_list"
  rm -f "$tmp"
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
fi

need_apt=()
for p in build-essential dpkg-dev libssl-dev libgmp-dev pkg-config bison flex gperf; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || need_apt+=("$p")
done
if [ "${#need_apt[@]}" -gt 0 ]; then
  log "installing ${need_apt[*]}"
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi

mkdir -p "$src_root"
cd "$src_root"
src_dir="$(find . -maxdepth 1 -type d -name 'strongswan-*' | sort | tail -n 1)"
if [ -z "$src_dir" ]; then
  log "fetching the strongswan source package"
  # Every version the deb-src entries list, newest first: the newest (e.g. from the
  # security suite) may not be downloadable from the mirror (it 404ed here once), and a
  # point release replaces the main suite's, so no version is written down here.
  fetched=""
  for v in $(apt-cache showsrc strongswan 2>/dev/null | sed -n 's/^Version: //p' | sort -rV | uniq); do
    rm -f strongswan_*
    if apt-get source -qq --download-only "strongswan=$v"; then
      fetched="$v"
      break
    fi
    log "strongswan=$v not downloadable"
  done
  if [ -z "$fetched" ]; then
    echo "build-strongswan: no version of the strongswan source package could be downloaded" >&2
    exit 1
  fi
  dsc="$(ls strongswan_*.dsc | sort | tail -n 1)"
  # Only the upstream tarball and the Debian patches are needed; no signature check against
  # a keyring (apt already verified the files' hashes from the signed Release). Unpacked
  # under a temporary name and renamed, so an interrupted run leaves no half tree that the
  # next run would take for the source.
  rm -rf .unpacking
  dpkg-source --no-check -x "$dsc" .unpacking >/dev/null
  upstream="${fetched#*:}"
  mv .unpacking "strongswan-${upstream%-*}"
  src_dir="./strongswan-${upstream%-*}"
fi
version="$(basename "$(ls strongswan_*.dsc | sort | tail -n 1)" .dsc | sed 's/^strongswan_//')"
cd "$src_dir"

# The pid file lives in $prefix/run: a test bind-mounts a folder of its own there (in the
# mount namespace `ip netns exec` makes) so that several charons can run at once.
configure_args=(--prefix="$prefix" --sysconfdir="$prefix/etc" --with-piddir="$prefix/run"
  --disable-defaults)
for p in "${plugins[@]}"; do configure_args+=("--enable-$p"); done
log "configuring strongswan $version for $prefix"
./configure "${configure_args[@]}" >build-configure.log 2>&1 ||
  { tail -n 40 build-configure.log >&2; exit 1; }
log "building (make -j$(nproc))"
make -j"$(nproc)" >build-make.log 2>&1 || { tail -n 40 build-make.log >&2; exit 1; }
"${as_root[@]}" make install >build-install.log 2>&1 || { tail -n 40 build-install.log >&2; exit 1; }
"${as_root[@]}" mkdir -p "$prefix/run"

if ! works; then
  echo "build-strongswan: $prefix does not hold a working charon/swanctl after the build" >&2
  exit 1
fi
printf 'strongswan %s\n%s\n' "$version" "$wanted_stamp" | "${as_root[@]}" tee "$stamp" >/dev/null
log "strongswan $version installed in $prefix"
