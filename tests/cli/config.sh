#!/usr/bin/env bash
# CLI contract for `metalm config`: exit codes, one-line errors, outputs.
# usage: config.sh METALM_BIN SOURCE_DIR
set -u
bin=$1 src=$2
source "$src/tests/cli/lib/harness.sh"
check show-defaults 0 '"n_layer": 4' -- "$bin" config show
check show-file-and-set 0 '"n_layer": 3' -- "$bin" config show --config "$src/configs/tiny.json" --set model.n_layer=3
check version 0 'metalm [0-9]+\.[0-9]+' -- "$bin" --version
check keys 0 '`model.n_layer`' -- "$bin" config keys
printf '{"model": {"n_layer": 2,}}' >"$tmp/bad.json"
check malformed 2 "bad.json:1:25: malformed JSON" -- "$bin" config show --config "$tmp/bad.json"
printf '{"model": {"n_layers": 2}}' >"$tmp/unknown.json"
check unknown-key 2 'unknown key "model.n_layers" \(did you mean "model.n_layer"\?\)' -- "$bin" config show --config "$tmp/unknown.json"
check wrong-type 2 'model.d_model=x: expected int' -- "$bin" config show --set model.d_model=x
check impossible 2 'must be divisible by model.n_head' -- "$bin" config show --set model.n_head=3
check missing-file 2 'nope.json' -- "$bin" config show --config "$tmp/nope.json"
check bad-log-level 2 'unknown level' -- "$bin" --log-level loud config show
check no-subcommand 2 '' -- "$bin"
finish
