# Sourced by scripts/serve, scripts/test and bench/peer: installs what a fresh Debian machine
# lacks and sets the shared cache locations (outside the clone, so reruns are fast).
set -euo pipefail

MISSIVE_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export MISSIVE_CACHE=${MISSIVE_CACHE:-$HOME/.cache/missive}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$MISSIVE_CACHE/target}
# SIMD the build machine has (never `native`: see scripts/cpu-rustflags).
RUSTFLAGS="${RUSTFLAGS:-} $("$MISSIVE_ROOT/scripts/cpu-rustflags")"
export RUSTFLAGS
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}

missive_install_system_deps() {
  local missing=()
  command -v cmake >/dev/null || missing+=(cmake)
  command -v clang >/dev/null || missing+=(clang)
  dpkg -s libclang-dev >/dev/null 2>&1 || missing+=(libclang-dev)
  python3 -m venv --help >/dev/null 2>&1 || missing+=(python3-venv python3-pip)
  command -v cargo >/dev/null || { echo "cargo is required: install Rust from rustup.rs" >&2; return 1; }
  if [ ${#missing[@]} -gt 0 ]; then
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    echo "installing: ${missing[*]}" >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

# A Python virtualenv under the cache with the given pip requirements; prints its path.
missive_venv() {
  local name=$1; shift
  local venv="$MISSIVE_CACHE/venv-$name"
  local stamp="$venv/.requirements"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$*" ]; then
    rm -rf "$venv"
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install -q --disable-pip-version-check "$@" >&2
    echo "$*" > "$stamp"
  fi
  echo "$venv"
}
