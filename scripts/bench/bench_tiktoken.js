// The tiktoken (WASM) side of scripts/bench/bench_tokenizer.sh: encodes a text file
// with get_encoding("gpt2").encode_ordinary on one thread, prints one JSON
// line with MB/s by wall and by CPU time (fastest of REPEAT runs) and writes the ids one per line.
//   node scripts/bench/bench_tiktoken.js TEXT IDS_OUT [REPEAT]
const fs = require("fs");
const path = require("path");
const { get_encoding } = require("tiktoken");
const version = JSON.parse(fs.readFileSync(
  path.join(path.dirname(require.resolve("tiktoken")), "package.json"), "utf8")).version;
const [input, idsOut, repeatArg] = process.argv.slice(2);
const repeat = Number(repeatArg || 3);
const text = fs.readFileSync(input, "utf8");
const bytes = Buffer.byteLength(text, "utf8");
const enc = get_encoding("gpt2");
let best = Infinity, first = 0, bestCpu = Infinity, ids = null;
for (let r = 0; r < repeat; ++r) {
  const t0 = process.hrtime.bigint();
  const c0 = process.cpuUsage();
  ids = enc.encode_ordinary(text);
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  const c = process.cpuUsage(c0);
  bestCpu = Math.min(bestCpu, (c.user + c.system) / 1e6);
  if (r === 0) first = s;
  best = Math.min(best, s);
}
enc.free();
fs.writeFileSync(idsOut, Array.from(ids).join("\n") + "\n");
console.log(JSON.stringify({ tokenizer: "tiktoken " + version + " (wasm) gpt2", bytes, tokens: ids.length,
  seconds_first: first, seconds_best: best, mb_per_s_first: bytes / 1e6 / first, mb_per_s: bytes / 1e6 / best,
  cpu_seconds_best: bestCpu, mb_per_s_cpu: bytes / 1e6 / bestCpu }));
