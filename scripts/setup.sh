#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh machine of this project's kind.
# Idempotent and non-interactive: a package already present is not installed again.
set -euo pipefail

need_apt=()
command -v tshark >/dev/null 2>&1 || need_apt+=(tshark)
# iperf3 runs through `ue-emu --tun` in the network-namespace data-plane tests.
command -v iperf3 >/dev/null 2>&1 || need_apt+=(iperf3)
# ip (iproute2) builds the network-namespace topology (scripts/netns-lab.sh).
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
# ping (iputils-ping) runs through `ue-emu --tun` in tests/tests/netns_lab.rs.
command -v ping >/dev/null 2>&1 || need_apt+=(iputils-ping)
# busybox-static gives the FROM-scratch lab images sh, ip and ping (scripts/build-images.sh).
dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q "ok installed" || need_apt+=(busybox-static)
# docker and compose run the lab (scripts/lab.sh, tests/tests/compose_lab.rs); Debian's
# docker.io and docker-compose (v1) when neither is there.
command -v docker >/dev/null 2>&1 || need_apt+=(docker.io)
docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null 2>&1 ||
  need_apt+=(docker-compose)

if [ "${#need_apt[@]}" -gt 0 ]; then
  echo "setup: installing ${need_apt[*]} from Debian"
  # Root installs directly; anyone else through sudo, which must not prompt.
  as_root=()
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
      as_root=(sudo -n)
    else
      echo "setup: installing ${need_apt[*]} needs root (or password-less sudo)" >&2
      exit 1
    fi
  fi
  # tshark asks whether non-root users may capture; answer once, non-interactively.
  echo "wireshark-common wireshark-common/install-setuid boolean false" |
    "${as_root[@]}" debconf-set-selections
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi

if ! version="$(tshark --version 2>/dev/null | head -n 1)" || [ -z "$version" ]; then
  echo "setup: tshark is not usable after installation" >&2
  exit 1
fi
echo "setup: $version"

# python-diameter (PyPI): an independent Diameter decoder for the aaa-stub tests
# (tests/tests/aaa_swm.rs). Installed once; skipped when already importable.
if ! python3 -c "import diameter.message" 2>/dev/null; then
  python3 -m pip install --quiet python-diameter ||
    python3 -m pip install --quiet --break-system-packages python-diameter
fi
python3 -c "import diameter.message" ||
  { echo "setup: python-diameter is not importable" >&2; exit 1; }
echo "setup: python-diameter ok"

# strongSwan with eap-aka-3gpp (a software USIM), the real UE of tests/tests/strongswan_interop.rs.
bash "$(dirname "$0")/build-strongswan.sh"

# The lab test needs a running docker daemon (started by the init system on install).
if docker info >/dev/null 2>&1; then
  echo "setup: docker $(docker version --format '{{.Server.Version}}' 2>/dev/null) running"
else
  echo "setup: the docker daemon is not reachable; tests/tests/compose_lab.rs will fail" >&2
fi
