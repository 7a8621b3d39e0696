#!/usr/bin/env bash
# Host set-up for patternbench on Debian/Ubuntu, as root: node packages and the Python venv.
# Idempotent: installs only what is missing, so a warm run takes a second or two.
set -euo pipefail
venv="${1:-.venv}"

die() { echo "setup: $*" >&2; exit 2; }

[ "$(id -u)" = 0 ] || die "run as root (the local cluster starts containerd and a kubelet)"
command -v go >/dev/null || die "Go 1.25 or newer is needed on PATH to build Kubernetes from its modules"
command -v python3 >/dev/null || die "python3 (3.11+) is needed"

# command -> Debian package
declare -A need=(
  [containerd]=containerd [runc]=runc [ctr]=containerd [iptables]=iptables
  [conntrack]=conntrack [ip]=iproute2
  [haproxy]=haproxy [nginx]=nginx [taskset]=util-linux  # make bench: the proxies meshproxy is compared with
)
missing=()
for cmd in "${!need[@]}"; do command -v "$cmd" >/dev/null || missing+=("${need[$cmd]}"); done
[ -x /usr/lib/cni/bridge ] || missing+=(containernetworking-plugins)
if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then missing+=(python3-venv); fi
if [ ${#missing[@]} -gt 0 ]; then
  pkgs=$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')
  echo "setup: installing Debian packages: $pkgs"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # shellcheck disable=SC2086
  apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
  # The bench runs haproxy and nginx as its own processes; the services the packages start
  # (nginx on port 80) are not wanted. Only the ones installed just now are stopped.
  for svc in haproxy nginx; do
    if [[ " $pkgs " == *" $svc "* ]] && command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
      systemctl disable --now "$svc" >/dev/null 2>&1 || true
    fi
  done
fi

if [ ! -x "$venv/bin/python" ]; then
  echo "setup: creating $venv"
  python3 -m venv "$venv"
fi
stamp="$venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "setup: installing patternbench and its Python dependencies into $venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -e .
  rm -f "$venv"/.installed-*
  touch "$stamp"
fi
