#!/usr/bin/env bash
# Installs what metalm needs on Debian bookworm and fetches the data.
# Idempotent: a second run checks and returns quickly.
#   scripts/dev/setup.sh            packages + data
#   SKIP_DATA=1 scripts/dev/setup.sh   packages only
set -euo pipefail
cd "$(dirname "$0")/../.."

log() { printf 'setup: %s\n' "$*" >&2; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

packages=(
  g++ cmake make pkg-config git
  libtorch-dev libopenblas0-pthread
  libcli11-dev libspdlog-dev nlohmann-json3-dev libgtest-dev
  libutf8proc-dev libgloo-dev
  python3 python3-numpy python3-matplotlib
  nodejs npm
)
# scripts/test.sh's METALM_TEST_PYTORCH=1: the golden references regenerate with torch.
[[ ${METALM_TEST_PYTORCH:-0} == 1 ]] && packages+=(python3-torch)

missing=()
for p in "${packages[@]}"; do
  # nodejs/npm may come from elsewhere; a working command is enough.
  if [[ $p == nodejs ]] && command -v node >/dev/null; then continue; fi
  if [[ $p == npm ]] && command -v npm >/dev/null; then continue; fi
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ $status == "install ok installed" ]] || missing+=("$p")
done

if ((${#missing[@]})); then
  sudo=""
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || die "need root (or sudo) to install: ${missing[*]}"
    sudo=sudo
  fi
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Debian's libtorch calls the system BLAS through the libblas.so.3
# alternative; the reference BLAS makes matrix products ~20x slower.
blas_link=/usr/lib/x86_64-linux-gnu/libblas.so.3
blas=$(readlink -f "$blas_link" || true)
if [[ $blas != *openblas* ]]; then
  candidate=$(update-alternatives --list libblas.so.3-x86_64-linux-gnu 2>/dev/null | grep openblas | head -1 || true)
  if [[ -n $candidate && $(id -u) -eq 0 ]]; then
    update-alternatives --set libblas.so.3-x86_64-linux-gnu "$candidate" >/dev/null
    blas=$(readlink -f "$blas_link")
  fi
fi
[[ $blas == *openblas* ]] || die "libtorch would use $blas, not OpenBLAS (install libopenblas0-pthread and select it with update-alternatives --config libblas.so.3-x86_64-linux-gnu)"

[[ ${SKIP_DATA:-0} == 1 ]] && exit 0
scripts/dev/fetch_data.sh
