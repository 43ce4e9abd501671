// Writes tiktoken's gpt2 ids of a text file as a JSON fixture:
//   node scripts/dev/tiktoken_golden.js INPUT.txt OUTPUT.json
// Needs the npm package tiktoken (e.g. cd /tmp/tk && npm install tiktoken;
// run with NODE_PATH=/tmp/tk/node_modules).
const fs = require("fs");
const { get_encoding } = require("tiktoken");
const path = require("path");
const version = JSON.parse(fs.readFileSync(
  path.join(path.dirname(require.resolve("tiktoken")), "package.json"), "utf8")).version;
const [input, output] = process.argv.slice(2);
const text = fs.readFileSync(input, "utf8");
const enc = get_encoding("gpt2");
const ids = Array.from(enc.encode_ordinary(text));
enc.free();
fs.writeFileSync(output, JSON.stringify({
  generator: "npm tiktoken " + version + ", get_encoding('gpt2').encode_ordinary",
  input: path.basename(input),
  ids: ids,
}) + "\n");
