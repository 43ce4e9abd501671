# Shared by the CLI contract tests (tests/cli/*.sh), sourced after
# `bin=$1 src=$2`: a scratch directory removed on exit, pass/fail counters,
# `check`, `m` (metalm, quiet, one thread) and `finish` (the summary line and
# the exit status).

tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
# precision auto's probe caches its result here, not in the home directory.
export XDG_CACHE_HOME=$tmp/cache
fails=0 passed=0

# check NAME EXPECTED_RC PATTERN -- command...
# The command must exit with EXPECTED_RC and print something matching PATTERN
# (an ERE; '' matches anything); a failure must be reported in one line.
check() {
  local name=$1 want=$2 pattern=$3; shift 4
  local out rc
  out=$("$@" 2>&1); rc=$?
  if [[ $rc -ne $want ]]; then echo "FAIL $name: exit $rc, expected $want: $out"; fails=$((fails+1)); return; fi
  if [[ -n $pattern ]] && ! grep -qE -- "$pattern" <<<"$out"; then echo "FAIL $name: output lacks /$pattern/: $out"; fails=$((fails+1)); return; fi
  if [[ $want -ne 0 && $(wc -l <<<"$out") -ne 1 ]]; then echo "FAIL $name: error is not one line: $out"; fails=$((fails+1)); return; fi
  echo "ok   $name"; passed=$((passed+1))
}

m() { "$bin" --log-level off --threads 1 "$@"; }

finish() {
  echo "$passed passed, $fails failed"
  [[ $fails -eq 0 ]]
}
