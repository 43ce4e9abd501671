#!/usr/bin/env bash
# CLI contract for output options: every --out (import-hf, prepare,
# tokenizer-train, export, analyze --out and --csv, synthetic-icl, tokenize
# --output, export --hf-config) refuses what is already there (exit 2, one
# line) and leaves it untouched; --force replaces an output of the same kind,
# never one of the other kind; a new path or an empty directory needs nothing.
# usage: safety.sh METALM_BIN SOURCE_DIR
set -u
bin=$1 src=$2
source "$src/tests/cli/lib/harness.sh"
export OMP_WAIT_POLICY=passive
golden=$src/tests/golden/hf_gpt2/plain_f32
cd "$tmp"  # an imported model's data.dir is relative: nothing of the caller's is found

# unchanged NAME PATH DIGEST: PATH still holds what DIGEST was taken from.
digest() { (cd "$1" 2>/dev/null && find . -type f -print0 | sort -z | xargs -0 sha256sum) || sha256sum <"$1"; }
unchanged() {
  if [[ $(digest "$2") == "$3" ]]; then echo "ok   $1"; passed=$((passed+1)); else echo "FAIL $1: $2 was modified"; fails=$((fails+1)); fi
}
# A directory holding something of the user's, and a regular file.
mine() { rm -rf "$1"; mkdir -p "$1"; echo "my notes" >"$1/notes.txt"; }
myfile() { rm -rf "$1"; echo "my file" >"$1"; }

mkdir -p "$tmp/corpus"
cp "$src"/include/metalm/*/*.hpp "$tmp/corpus/"
prep=(prepare --tokenizer byte --input "$tmp/corpus" --val-fraction 0.2)

# ---- prepare --out DIR ----
mine "$tmp/p"; d=$(digest "$tmp/p")
check prepare-refuses-dir 2 '^metalm: error: --out .*/p is a directory that is not empty; .*--force' -- m "${prep[@]}" --out "$tmp/p"
unchanged prepare-dir-untouched "$tmp/p" "$d"
myfile "$tmp/pf"; d=$(digest "$tmp/pf")
check prepare-refuses-file 2 '--out .*/pf exists and is not a directory' -- m "${prep[@]}" --out "$tmp/pf"
check prepare-force-never-replaces-a-file 2 'is not a directory' -- m "${prep[@]}" --out "$tmp/pf" --force
unchanged prepare-file-untouched "$tmp/pf" "$d"
mkdir -p "$tmp/empty"
check prepare-empty-dir 0 '' -- m "${prep[@]}" --out "$tmp/empty"
check prepare-force 0 '' -- m "${prep[@]}" --out "$tmp/p" --force
check prepare-force-replaced 0 '^meta.json train.bin val.bin $' -- bash -c "echo \$(ls '$tmp/p') ''"
check prepare-new 0 '' -- m "${prep[@]}" --out "$tmp/data"

# ---- tokenizer-train --out DIR ----
tt=(tokenizer-train --input "$tmp/corpus" --vocab-size 300)
mine "$tmp/bpe"; d=$(digest "$tmp/bpe")
check tokenizer-train-refuses-dir 2 '--out .*/bpe is a directory that is not empty' -- m "${tt[@]}" --out "$tmp/bpe"
unchanged tokenizer-train-dir-untouched "$tmp/bpe" "$d"
myfile "$tmp/bpef"
check tokenizer-train-refuses-file 2 'exists and is not a directory' -- m "${tt[@]}" --out "$tmp/bpef" --force
check tokenizer-train-force 0 '' -- m "${tt[@]}" --out "$tmp/bpe" --force
check tokenizer-train-force-replaced 0 '^encoder.json vocab.bpe $' -- bash -c "echo \$(ls '$tmp/bpe') ''"

# ---- import-hf --out DIR (the tester's lost training run) ----
mine "$tmp/ck"; mkdir -p "$tmp/ck/checkpoints/step_00000100"; echo '{}' >"$tmp/ck/metrics.jsonl"; d=$(digest "$tmp/ck")
check import-hf-refuses-dir 2 '^metalm: error: --out .*/ck is a directory that is not empty' -- m import-hf --from "$golden" --out "$tmp/ck"
unchanged import-hf-dir-untouched "$tmp/ck" "$d"
myfile "$tmp/ckf"; d=$(digest "$tmp/ckf")
check import-hf-refuses-file 2 'exists and is not a directory' -- m import-hf --from "$golden" --out "$tmp/ckf"
check import-hf-force-never-replaces-a-file 2 'is not a directory' -- m import-hf --from "$golden" --out "$tmp/ckf" --force
unchanged import-hf-file-untouched "$tmp/ckf" "$d"
check import-hf-force 0 '' -- m import-hf --from "$golden" --out "$tmp/ck" --force
check import-hf-force-replaced 0 '^config.json model.safetensors state.json $' -- bash -c "echo \$(ls '$tmp/ck') ''"
check import-hf-new 0 '' -- m import-hf --from "$golden" --out "$tmp/gpt2"

# ---- export --out FILE, --hf-config FILE ----
myfile "$tmp/w.safetensors"; d=$(digest "$tmp/w.safetensors")
check export-refuses-file 2 '^metalm: error: --out .*/w.safetensors already exists; .*--force' -- m export --checkpoint "$tmp/gpt2" --out "$tmp/w.safetensors"
unchanged export-file-untouched "$tmp/w.safetensors" "$d"
mine "$tmp/wd"; d=$(digest "$tmp/wd")
check export-refuses-dir 2 '--out .*/wd is a directory' -- m export --checkpoint "$tmp/gpt2" --out "$tmp/wd" --force
unchanged export-dir-untouched "$tmp/wd" "$d"
myfile "$tmp/hf.json"
check export-refuses-hf-config 2 '--hf-config .*/hf.json already exists' -- m export --checkpoint "$tmp/gpt2" --layout hf --out "$tmp/new.safetensors" --hf-config "$tmp/hf.json"
check export-refused-before-writing 1 '' -- test -e "$tmp/new.safetensors"
check export-force 0 '' -- m export --checkpoint "$tmp/gpt2" --out "$tmp/w.safetensors" --force
check export-force-replaced 1 '' -- grep -q "my file" "$tmp/w.safetensors"
check export-hf-force 0 '' -- m export --checkpoint "$tmp/gpt2" --layout hf --out "$tmp/new.safetensors" --hf-config "$tmp/hf.json" --force
check export-hf-config-written 0 '"n_embd"' -- cat "$tmp/hf.json"

# ---- analyze --out FILE, --csv DIR ----
echo "1 2 3 4 5 6 7 8 9 10 11 12" >"$tmp/ids.txt"
an=(analyze --checkpoint "$tmp/gpt2" --ids "$tmp/ids.txt" --batches 1 --batch-size 1)
myfile "$tmp/a.json"; d=$(digest "$tmp/a.json")
check analyze-refuses-out 2 '^metalm: error: --out .*/a.json already exists' -- m "${an[@]}" --out "$tmp/a.json"
unchanged analyze-out-untouched "$tmp/a.json" "$d"
mine "$tmp/csv"; d=$(digest "$tmp/csv")
check analyze-refuses-csv 2 '^metalm: error: --csv .*/csv is a directory that is not empty' -- m "${an[@]}" --out "$tmp/b.json" --csv "$tmp/csv"
check analyze-refused-before-writing 1 '' -- test -e "$tmp/b.json"
unchanged analyze-csv-untouched "$tmp/csv" "$d"
myfile "$tmp/csvf"
check analyze-csv-never-replaces-a-file 2 '--csv .*/csvf exists and is not a directory' -- m "${an[@]}" --out "$tmp/b.json" --csv "$tmp/csvf" --force
check analyze-force 0 '' -- m "${an[@]}" --out "$tmp/a.json" --csv "$tmp/csv" --force
check analyze-force-replaced 0 '^by_position.csv states.csv steps.csv $' -- bash -c "echo \$(ls '$tmp/csv') ''"
check analyze-json-written 0 '"steps"' -- cat "$tmp/a.json"

# ---- synthetic-icl --out FILE, tokenize --output FILE ----
myfile "$tmp/s.json"; d=$(digest "$tmp/s.json")
check synthetic-refuses 2 '--out .*/s.json already exists' -- m synthetic-icl --n 4 --batch 2 --out "$tmp/s.json"
unchanged synthetic-untouched "$tmp/s.json" "$d"
check synthetic-force 0 '' -- m synthetic-icl --n 4 --batch 2 --out "$tmp/s.json" --force
echo "hello" >"$tmp/hello.txt"
myfile "$tmp/ids.out"; d=$(digest "$tmp/ids.out")
check tokenize-refuses 2 '--output .*/ids.out already exists' -- m tokenize --tokenizer byte --input "$tmp/hello.txt" --output "$tmp/ids.out"
unchanged tokenize-untouched "$tmp/ids.out" "$d"
check tokenize-force 0 '' -- m tokenize --tokenizer byte --input "$tmp/hello.txt" --output "$tmp/ids.out" --force
check tokenize-force-replaced 0 '^104 101 108 108 111 10$' -- cat "$tmp/ids.out"

# No temporaries left next to any output.
check no-temporaries 0 '^$' -- bash -c "find '$tmp' -name '*.tmp-*' -o -name '*.old-*' -o -name '*.tmp.*'"
finish
