#!/usr/bin/env bash
# Mutation check of the analysis tests: applies, one at a time, single-line
# faults ("mutants") to src/analysis and to the capture path of src/model in a
# scratch copy of the tree, rebuilds it incrementally, runs the test suites that
# can see the fault, and prints whether each mutant was killed (a test failed)
# or survived, then the score. A tool, not part of CI.
#
#   scripts/dev/mutants.sh                    every mutant
#   scripts/dev/mutants.sh --only 17,3        some of them (numbers of --list), in that order
#   scripts/dev/mutants.sh --list             the mutants, without running anything
#   scripts/dev/mutants.sh --out FILE         also write the table to FILE
#   scripts/dev/mutants.sh --scratch DIR      scratch directory (default /tmp/metalm-mutants)
#   scripts/dev/mutants.sh --worktree         copy the working tree (without build/,
#                                         data/ and .git/) instead of the last
#                                         commit (git archive HEAD)
#   scripts/dev/mutants.sh --lock FILE        the lock each build+test holds
#                                         (default /tmp/metalm-cpu.lock), e.g. the
#                                         one other builds on the machine take
#
# The scratch tree is DIR/src, its build DIR/build (configured once, Release,
# without the apps: the CLI is not on the analysis path); each mutant is a
# rebuild of what the one changed file touches plus the suites' test binaries.
# Tests run: the `analysis` suite for every mutant, and the `model` suite too
# for mutants in src/model, with METALM_GOLDEN_NO_PYTHON=1 (the golden tests
# compare with the committed files and skip regenerating them: a mutant of the
# C++ cannot change what the Python writes). Not run: the `train` suite (its
# analysis tests only see the trainer's use of analyze_model, minutes per run)
# and the CLI and example tests (they need the apps and an installed package,
# and they check formats, not the analysis values).
#
# Every build+test of a mutant holds /tmp/metalm-cpu.lock or --lock (with -j2) for that
# mutant only, so other work on the machine interleaves. A mutant whose code no
# longer occurs exactly once (the source moved on) is reported "missing"; one
# that does not compile "invalid"; neither is counted in the score.
set -euo pipefail

repo="$(cd "$(dirname "$0")/../.." && pwd)"
scratch=/tmp/metalm-mutants
only=""
out=""
list=0
worktree=0
lock=/tmp/metalm-cpu.lock
while (($#)); do
  case "$1" in
    --only) only="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --scratch) scratch="$2"; shift 2 ;;
    --list) list=1; shift ;;
    --worktree) worktree=1; shift ;;
    --lock) lock="$2"; shift 2 ;;
    -h|--help) sed -n '2,34p' "$0"; exit 0 ;;
    *) echo "mutants.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done

# kind <TAB> file <TAB> original code (must occur exactly once) <TAB> mutated code
mutants() {
  cat <<'EOF'
wrong state	src/analysis/trajectory.cpp	st.norm_before.copy_(nb);	st.norm_before.copy_(row_norm(cur.h));
wrong state	src/analysis/trajectory.cpp	StateValues v = evaluate_state(flat[k], rows, o, k == K, chunk);	StateValues v = evaluate_state(flat[std::min(k + 1, K)], rows, o, k == K, chunk);
wrong state	src/analysis/trajectory.cpp	st.loss_before.copy_(prev.loss);	st.loss_before.copy_(cur.loss);
wrong state	src/analysis/trajectory.cpp	st.loss_after.copy_(cur.loss);	st.loss_after.copy_(prev.loss);
swapped sign	src/analysis/trajectory.cpp	st.actual_decrease.copy_(prev.loss - cur.loss);	st.actual_decrease.copy_(cur.loss - prev.loss);
wrong state	src/analysis/trajectory.cpp	const at::Tensor ng = row_norm(g);	const at::Tensor ng = row_norm(prev.h);
swapped sign	src/analysis/trajectory.cpp	const at::Tensor dot = -row_dot(delta, g);	const at::Tensor dot = row_dot(delta, g);
swapped sign	src/analysis/trajectory.cpp	st.first_order_decrease.copy_(dot);	st.first_order_decrease.copy_(-dot);
wrong normalisation	src/analysis/trajectory.cpp	st.step_size.copy_(eta);	st.step_size.copy_(dot / ng);
wrong normalisation	src/analysis/trajectory.cpp	st.alignment.copy_(row_cos(dot, nd, ng));	st.alignment.copy_(row_cos(dot, nd, nd));
wrong normalisation	src/analysis/trajectory.cpp	if (step_size) step_size->copy_(dot / ng.pow(2));	if (step_size) step_size->copy_(dot / ng);
wrong normalisation	src/analysis/trajectory.cpp	st.radial_update.copy_(radial / nb);	st.radial_update.copy_(radial / nd);
wrong statistic	src/analysis/trajectory.cpp	st.norm_update.copy_(nd);	st.norm_update.copy_(ng);
wrong statistic	src/analysis/trajectory.cpp	rec.norm.copy_(row_norm(v.h));	rec.norm.copy_(v.h.norm(1, {1}));
control equals true value	src/analysis/trajectory.cpp	control_statistics(delta, nd, prev.grad_uniform, st.alignment_uniform, &st.step_size_uniform);	control_statistics(delta, nd, prev.grad, st.alignment_uniform, &st.step_size_uniform);
chunk boundary	src/analysis/trajectory.cpp	for (int64_t begin = 0; begin < n; begin += chunk) {	for (int64_t begin = 0; begin < n; begin += chunk + 1) {
chunk boundary	src/analysis/trajectory.cpp	const int64_t len = std::min(chunk, n - begin);	const int64_t len = std::min(chunk, n - begin - 1);
off-by-one position	src/analysis/trajectory.cpp	tr.positions = tr.rows.remainder(tr.length);	tr.positions = tr.rows.remainder(tr.length - 1);
off-by-one position	src/analysis/trajectory.cpp	offset += p.batch * p.length;	offset += p.batch * (p.length - 1);
off-by-one position	src/analysis/report.cpp	const at::Tensor pos0 = tr.positions.eq(0);	const at::Tensor pos0 = tr.positions.eq(1);
off-by-one position	src/analysis/report.cpp	const at::Tensor rest = tr.positions.gt(0);	const at::Tensor rest = tr.positions.ge(0);
wrong token	src/analysis/report.cpp	t.defined() ? number(frequency_spearman(t, *tokens, *bins)) : json(nullptr);	t.defined() ? number(frequency_spearman(t, tr.target_token, *bins)) : json(nullptr);
wrong token	src/analysis/report.cpp	j["by_frequency"]["current"] = frequency_groups(positional, tr.current_token, *bins);	j["by_frequency"]["current"] = frequency_groups(positional, tr.target_token, *bins);
wrong token	src/analysis/report.cpp	j["by_frequency"] = frequency_groups({{"norm", norms}}, ids, *bins);	j["by_frequency"] = frequency_groups({{"norm", norms}}, ids + 1, *bins);
wrong token	src/analysis/analyze_model.cpp	tr.current_token = inputs.reshape({-1}).index_select(0, tr.rows).cpu();	tr.current_token = targets.reshape({-1}).index_select(0, tr.rows).cpu();
wrong token	src/analysis/objective.cpp	at::Tensor target = flat_targets_.index_select(0, rows).clamp_min(0).unsqueeze(1);	at::Tensor target = flat_targets_.index_select(0, rows.flip(0)).clamp_min(0).unsqueeze(1);
wrong normalisation	src/analysis/objective.cpp	return -at::log_softmax(logits, 1).gather(1, target).squeeze(1);	return -at::log_softmax(logits, 0).gather(1, target).squeeze(1);
wrong normalisation	src/analysis/report.cpp	const at::Tensor norms = table.detach().to(at::kDouble).norm(2, {1});	const at::Tensor norms = table.detach().to(at::kDouble).norm(1, {1});
bin edge	src/analysis/report.cpp	json g{{"bin", i}, {"count_lo", bins.lower(i)}, {"count_hi", bins.upper(i)}, {"positions", n[static_cast<size_t>(i)]}};	json g{{"bin", i}, {"count_lo", bins.lower(i)}, {"count_hi", bins.lower(i + 1) + 1}, {"positions", n[static_cast<size_t>(i)]}};
quantile level	src/analysis/summary.cpp	s.q10 = quantile_sorted(v, 0.1);	s.q10 = quantile_sorted(v, 0.2);
quantile level	src/analysis/summary.cpp	s.q90 = quantile_sorted(v, 0.9);	s.q90 = quantile_sorted(v, 0.8);
quantile level	src/analysis/summary.cpp	const size_t hi = std::min(lo + 1, sorted.size() - 1);	const size_t hi = std::min(lo, sorted.size() - 1);
population vs sample std	src/analysis/summary.cpp	s.std = std::sqrt(ss / n);	s.std = std::sqrt(ss / (n - 1));
wrong statistic	src/analysis/summary.cpp	if (std::isfinite(x)) v.push_back(x);	v.push_back(x);
wrong statistic	src/analysis/summary.cpp	if (k < 0 || k >= groups || !std::isfinite(v[i])) continue;	if (k < 0 || k >= groups) continue;
wrong statistic	src/analysis/summary.cpp	const double rank = 0.5 * static_cast<double>(i + j) + 1.0;  // average of ranks i+1..j+1	const double rank = static_cast<double>(i) + 1.0;
wrong normalisation	src/analysis/summary.cpp	return sab / std::sqrt(saa * sbb);	return sab / std::sqrt(saa * saa);
bin edge	src/analysis/summary.cpp	return std::clamp<int64_t>(static_cast<int64_t>(std::floor(x * static_cast<double>(bins_))), 0, bins_ - 1);	return std::clamp<int64_t>(static_cast<int64_t>(std::ceil(x * static_cast<double>(bins_))), 0, bins_ - 1);
bin edge	src/analysis/summary.cpp	if (log_max_ <= 0 || count <= 0) return 0;	if (log_max_ <= 0 || count <= 1) return 0;
bin edge	src/analysis/summary.cpp	return std::exp(log_max_ * static_cast<double>(bin) / static_cast<double>(bins_)) - 1.0;	return std::exp(log_max_ * static_cast<double>(bin) / static_cast<double>(bins_));
control equals true value	src/analysis/analyze_model.cpp	per_batch.seed = static_cast<int64_t>(static_cast<uint64_t>(analysis.seed) + index);	per_batch.seed = static_cast<int64_t>(static_cast<uint64_t>(analysis.seed));
control equals true value	src/analysis/objective.cpp	random = at::where(targets_.ge(0), random, targets_);  // keep "no target" marks	random = at::where(targets_.ge(0), targets_, targets_);
wrong token	src/analysis/objective.cpp	for (int64_t t = 0; t < T; ++t) u[i * T + t] = 1 + static_cast<int64_t>(mix(seed, i, t) % wrong);	for (int64_t t = 0; t < T; ++t) u[i * T + t] = 1 + static_cast<int64_t>(mix(seed, t, i) % wrong);
wrong statistic	src/analysis/analyze_model.cpp	const at::Tensor valid = targets.ge(0);                                                      // [B, T]	const at::Tensor valid = targets.ge(-1);
wrong state	src/analysis/analyze_model.cpp	names.push_back(l + 1 == n_layer ? site_name(Site::Final) : site_name(Site::ResidPost, l));	names.push_back(site_name(Site::ResidPost, l));
wrong state	src/model/trace.cpp	if (sublayer) states.push_back(at(Site::ResidMid, l));	if (sublayer) states.push_back(at(Site::ResidPre, l));
wrong state	src/model/block.cpp	writer->put(Site::ResidMid, layer, mid);	writer->put(Site::ResidMid, layer, x);
wrong normalisation	src/model/causal_transformer.cpp	torch::Tensor CausalTransformerImpl::lens_logits(const torch::Tensor& h) { return unembed(final_norm(h)); }	torch::Tensor CausalTransformerImpl::lens_logits(const torch::Tensor& h) { return unembed(h); }
wrong direction	src/analysis/intervene.cpp	at::addcmul(next, -along_g.unsqueeze(1), g),	at::addcmul(next, -along_g.unsqueeze(1), delta),
wrong normalisation	src/analysis/intervene.cpp	const at::Tensor along_g = row_dot(delta, g) / row_dot(g, g);	const at::Tensor along_g = row_dot(delta, g) / row_dot(g, g).sqrt();
wrong normalisation	src/analysis/intervene.cpp	(sign * energy.sqrt())	(sign * energy)
wrong normalisation	src/analysis/intervene.cpp	(row_dot(delta, s) / row_dot(s, s))	(row_dot(delta, s) / row_dot(delta, delta))
swapped sign	src/analysis/intervene.cpp	at::addcmul(s, along_g.unsqueeze(1), g),	at::addcmul(s, -along_g.unsqueeze(1), g),
swapped sign	src/analysis/intervene.cpp	at::add(s, g, -median_step_size[k]),	at::add(s, g, median_step_size[k]),
wrong statistic	src/analysis/intervene.cpp	edits.push_back(at::add(next, delta, alpha - 1.0));	edits.push_back(at::add(next, delta, alpha * alpha - 1.0));
wrong state	src/analysis/intervene.cpp	const at::Tensor loss = loss_from(K, states[K]);	const at::Tensor loss = loss_from(0, states[0]);
wrong state	src/analysis/intervene.cpp	effects(states[k + 1], k + 1, rows,	effects(states[k], k + 1, rows,
control equals true value	src/analysis/intervene.cpp	out[p.index] = at::where(p.finite, change, at::full_like(change, NAN));	out[p.index] = change;
wrong token	src/analysis/intervene.cpp	(mix(seed, b, t, step, 2 * j) >> 11) + 1	(mix(seed, t, b, step, 2 * j) >> 11) + 1
wrong statistic	src/analysis/intervene.cpp	cluster.push_back(sequences + parts.back().rows.cpu().div(T, "floor"));	cluster.push_back(sequences + parts.back().rows.cpu());
wrong copy	src/analysis/intervene.cpp	stacked.index_copy_(0, p.at + i * BT, p.values);	stacked.index_copy_(0, p.at, p.values);
wrong copy	src/analysis/intervene.cpp	per_copy[i].index_select(0, rows)	per_copy[0].index_select(0, rows)
wrong state	src/analysis/intervene.cpp	analysis.chunk, copies, c.gradients));	analysis.chunk, copies, std::vector<at::Tensor>(c.gradients.rbegin(), c.gradients.rend())));
wrong state	src/analysis/intervene.cpp	c.readings = lens.translate(c.trajectory.states, c.trajectory.names);	c.readings = c.trajectory.states;
wrong state	src/analysis/intervene.cpp	const at::Tensor state = lens.state_of(names[j], edited, s, c.readings[j]).reshape(reading.sizes());	const at::Tensor state = edited.reshape(reading.sizes());
wrong normalisation	src/analysis/lens.cpp	at::matmul(du.reshape({-1, d}), it->second.to(du.device()).t())	at::matmul(du.reshape({-1, d}), it->second.to(du.device()))
wrong state	src/model/causal_transformer.cpp	if (sublayer && j % 2 == 1) x = block_list_[first++]->forward_mlp(x);	if (sublayer && j % 2 == 1) x = block_list_[first++]->forward(x, ctx);
off-by-one position	src/model/causal_transformer.cpp	int64_t first = sublayer ? j / 2 : j;	int64_t first = sublayer ? j / 2 : j + 1;
wrong control	src/analysis/trajectory.cpp	control_statistics(delta, nd, prev.grad_shuffled, st.alignment_shuffled, &st.step_size_shuffled);	control_statistics(delta, nd, prev.grad_uniform, st.alignment_shuffled, &st.step_size_shuffled);
wrong control	src/analysis/trajectory.cpp	control_statistics(delta, nd, prev.grad_bigram, st.alignment_bigram, &st.step_size_bigram);	control_statistics(delta, nd, prev.grad_shuffled, st.alignment_bigram, &st.step_size_bigram);
wrong control	src/analysis/trajectory.cpp	control_statistics(delta, nd, prev.grad_belief, st.alignment_belief, &st.step_size_belief);	control_statistics(delta, nd, prev.grad_bigram, st.alignment_belief, &st.step_size_belief);
wrong normalisation	src/analysis/trajectory.cpp	st.step_size_scaled.copy_(eta / nb.pow(2));	st.step_size_scaled.copy_(eta / nb);
wrong normalisation	src/analysis/trajectory.cpp	2.0 * at::atan2(row_norm(a_hat - b_hat), row_norm(a_hat + b_hat))	at::atan2(row_norm(a_hat - b_hat), row_norm(a_hat + b_hat))
fix removed	src/analysis/trajectory.cpp	if (v.grad_belief.defined()) {	if (false && v.grad_belief.defined()) {
unsigned	src/analysis/trajectory.cpp	st.norm_sq_growth_gradient_signed.copy_(dot * dot.abs() / ng.pow(2));	st.norm_sq_growth_gradient_signed.copy_(dot * dot / ng.pow(2));
wrong normalisation	src/analysis/trajectory.cpp	(along / nbel.pow(2)).unsqueeze(1) * gb	(along / nbel).unsqueeze(1) * gb
wrong normalisation	src/analysis/trajectory.cpp	st.cos_grad_belief.copy_(row_cos(along, ng, nbel));	st.cos_grad_belief.copy_(row_cos(along, ng, ng));
control equals true value	src/analysis/trajectory.cpp	const at::Tensor gp = g.index_select(0, partners[0]);	const at::Tensor gp = g;
NaN counted	src/analysis/trajectory.cpp	st.null_count[static_cast<int64_t>(p)] = finite.sum().to(at::kDouble);	st.null_count[static_cast<int64_t>(p)] = static_cast<double>(cos.numel());
swapped sign	src/analysis/trajectory.cpp	const at::Tensor unit_descent = -g / ng.unsqueeze(1);	const at::Tensor unit_descent = g / ng.unsqueeze(1);
bigram group	src/analysis/controls.cpp	if (members.size() < 2) continue;	if (members.size() < 3) continue;
bigram group	src/analysis/controls.cpp	fell[static_cast<size_t>(i)] = 0.0;	fell[static_cast<size_t>(i)] = 1.0;
wrong stream	src/analysis/controls.cpp	to_longs(cycle_partners(rows, seed, kShuffledStream))	to_longs(cycle_partners(rows, seed, kBigramStream))
control equals true value	src/analysis/controls.cpp	= members[order[(j + 1) % order.size()]];	= members[order[j]];
wrong key	src/analysis/controls.cpp	mix(seed, kPermutationKey, stream, rows[static_cast<size_t>(i)])	mix(seed, kPermutationKey, rows[static_cast<size_t>(i)], stream)
wrong draw	src/analysis/inference.cpp	mix(seed_, kBootstrapStream, r, j) % c	mix(seed_, kBootstrapStream, j, r) % c
NaN counted	src/analysis/inference.cpp	index_add_(0, index_, finite.to(at::kDouble));	index_add_(0, index_, at::ones_like(v));
quantile level	src/analysis/inference.cpp	return {quantile(means, (1 - level) / 2), quantile(means, (1 + level) / 2)};	return {quantile(means, (1 - level)), quantile(means, (1 + level) / 2)};
quantile level	src/analysis/inference.cpp	const size_t hi = std::min(lo + 1, values.size() - 1);	const size_t hi = std::min(lo, values.size() - 1);
unmatched control	src/analysis/report.cpp	if (c.matched && std::isfinite(mean) && mean < smallest) {	if (std::isfinite(mean) && mean < smallest) {
swapped sign	src/analysis/report.cpp	const at::Tensor gap = st.alignment - control;	const at::Tensor gap = control - st.alignment;
quantile level	src/analysis/report.cpp	return json::array({number(quantile(m, 0.025)), number(quantile(m, 0.975))});	return json::array({number(quantile(m, 0.05)), number(quantile(m, 0.95))});
wrong cluster	src/analysis/report.cpp	at::div(tr.rows, tr.length, "floor")	tr.rows
wrong token	src/analysis/objective.cpp	final_.index_select(0, rows).to(h.scalar_type())	final_.index_select(0, rows.flip(0)).to(h.scalar_type())
wrong normalisation	src/analysis/objective.cpp	return -(p * at::log_softmax(logits_fn_(h), 1)).sum(1);	return -(p * logits_fn_(h)).sum(1);
EOF
}

mapfile -t rows < <(mutants)
selected() {  # mutant number -> whether to run it
  [[ -z "$only" ]] && return 0
  [[ ",$only," == *",$1,"* ]]
}

if ((list)); then
  for i in "${!rows[@]}"; do
    IFS=$'\t' read -r kind file orig mut <<<"${rows[$i]}"
    printf '%3d  %-26s %s\n       - %s\n       + %s\n' "$((i + 1))" "$kind" "$file" "$orig" "$mut"
  done
  exit 0
fi

src="$scratch/src"
build="$scratch/build"
head="$scratch/head"
mkdir -p "$scratch"

# The scratch tree: only files whose content changed are copied (with a new
# mtime), so a second run of the script rebuilds little.
echo "mutants.sh: copying the $( ((worktree)) && echo "working tree" || echo "last commit" ) to $src" >&2
rm -rf "$head" && mkdir -p "$head"
if ((worktree)); then
  tar -C "$repo" --exclude='./build*' --exclude=./data --exclude=./runs --exclude=./.git -cf - . | tar -x -C "$head"
else
  git -C "$repo" archive HEAD | tar -x -C "$head"
fi
mkdir -p "$src"
python3 - "$head" "$src" <<'PY'
import filecmp, os, shutil, sys
head, src = sys.argv[1:3]
for root, dirs, files in os.walk(head):
    rel = os.path.relpath(root, head)
    os.makedirs(os.path.join(src, rel), exist_ok=True)
    for f in files:
        a, b = os.path.join(root, f), os.path.join(src, rel, f)
        if not os.path.exists(b) or not filecmp.cmp(a, b, shallow=False):
            shutil.copy2(a, b)
            os.utime(b)  # newer than any object built from the old content
for root, dirs, files in os.walk(src, topdown=False):
    rel = os.path.relpath(root, src)
    for f in files:
        if not os.path.exists(os.path.join(head, rel, f)):
            os.remove(os.path.join(root, f))
    if not os.path.exists(os.path.join(head, rel)):
        os.rmdir(root)
PY

if [[ ! -f "$build/CMakeCache.txt" ]]; then
  cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release -DMETALM_BUILD_APPS=OFF >"$scratch/configure.log" 2>&1 ||
    { echo "mutants.sh: configuring failed, see $scratch/configure.log" >&2; exit 1; }
fi

# Builds the suites' binaries and runs the suites of `regex`; 0 when all pass.
# 2 when the build fails.
build_and_test() {
  local regex="$1" log="$2"
  flock "$lock" bash -c '
    cmake --build "$1" -j2 --target test_analysis test_model >"$2" 2>&1 || exit 2
    env OMP_WAIT_POLICY=passive METALM_GOLDEN_NO_PYTHON=1 \
      ctest --test-dir "$1" -R "$3" --timeout 600 --output-on-failure >>"$2" 2>&1 || exit 1
  ' _ "$build" "$log" "$regex"
}

echo "mutants.sh: baseline (no mutant)" >&2
if ! build_and_test '^(analysis|model)$' "$scratch/baseline.log"; then
  echo "mutants.sh: the unmutated tree fails its tests, see $scratch/baseline.log" >&2
  exit 1
fi

# Replaces the one occurrence of $2 by $3 in file $1; 3 when it does not occur exactly once.
apply() {
  python3 - "$@" <<'PY'
import sys
path, orig, mut = sys.argv[1:4]
text = open(path).read()
if text.count(orig) != 1:
    sys.exit(3)
open(path, "w").write(text.replace(orig, mut))
PY
}

# The order of the run: --only's, else the list's.
if [[ -n "$only" ]]; then
  IFS=, read -ra order <<<"$only"
else
  order=($(seq 1 "${#rows[@]}"))
fi

table=()
killed=0 survived=0
for n in "${order[@]}"; do
  i=$((n - 1))
  ((i >= 0 && i < ${#rows[@]})) || { echo "mutants.sh: no mutant $n (1..${#rows[@]})" >&2; exit 2; }
  IFS=$'\t' read -r kind file orig mut <<<"${rows[$i]}"
  line=$(grep -nF -- "$orig" "$src/$file" | head -1 | cut -d: -f1 || true)
  regex='^analysis$'
  [[ "$file" == src/model/* ]] && regex='^(analysis|model)$'
  log="$scratch/mutant_$n.log"
  start=$(date +%s)
  if apply "$src/$file" "$orig" "$mut"; then
    if build_and_test "$regex" "$log"; then
      result=survived; survived=$((survived + 1))
    else
      rc=$?
      if ((rc == 2)); then result=invalid; else result=killed; killed=$((killed + 1)); fi
    fi
    cp "$head/$file" "$src/$file"  # restored (a new mtime: rebuilt with the next mutant)
  else
    result=missing
  fi
  row=$(printf '%3d  %-8s %-26s %s:%s  (%ds)' "$n" "$result" "$kind" "$file" "${line:-?}" "$(($(date +%s) - start))")
  echo "$row"
  table+=("$row")
done

total=$((killed + survived))
score="n/a"
((total > 0)) && score=$(awk -v k=$killed -v t=$total 'BEGIN { printf "%.1f%%", 100 * k / t }')
summary="killed $killed of $total mutants ($score); survived $survived"
echo "$summary"
if [[ -n "$out" ]]; then
  { echo "# scripts/dev/mutants.sh, $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git -C "$repo" rev-parse --short HEAD)"
    printf '%s\n' "${table[@]}"
    echo "$summary"; } >"$out"
fi
((survived == 0))
