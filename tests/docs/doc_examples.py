#!/usr/bin/env python3
"""The documentation test (ctest doc_examples): no page can go stale unseen.

  doc_examples.py METALM_BIN SOURCE_DIR [--only links|readme|options|examples]

Checks, each failing with the page and line:
- links: every relative link and image of README.md and docs/*.md names a file or directory
  of the repository, and a #fragment a heading of that page (GitHub's anchors);
- readme: the README's two commands, scripts/quickstart.sh and scripts/test.sh, are in a
  ```sh block of README.md as their own lines (CI runs them; this test does not), and every
  code line of its ```cpp blocks is a line of the example (apps/examples/) linked before it;
- options: every long option that `metalm CMD --help` lists appears in the section of
  docs/cli.md whose heading names `metalm CMD`, and every command has such a section;
- examples: every ```sh block that follows a line `<!-- doc-test -->` in README.md and
  docs/cli.md runs with bash (set -e) and exits 0. The blocks of one page run in order in one
  scratch directory, with `metalm` on PATH and small stand-ins for the data: data/brown is
  Brown-format text made from docs/design.md, configs/ holds every preset shrunk to seconds
  (same name, data directory and architecture; a few steps), data/gpt2 is $METALM_DATA/gpt2
  or the repository's data/gpt2 when present, else the committed tiny BPE fixture.
  `<!-- doc-test setup: COMMANDS -->` runs COMMANDS (hidden from the reader) before the block;
  there $DOC_TEST_SOURCE is the repository.
"""
import concurrent.futures
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

PAGES_WITH_EXAMPLES = ["README.md", "docs/cli.md"]
README_COMMANDS = ["scripts/quickstart.sh", "scripts/test.sh"]
BLOCK_TIMEOUT_S = 300

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
MARKER = re.compile(r"^<!--\s*doc-test(?:\s+setup:\s*(.*?))?\s*-->\s*$")
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")

failures = []


def fail(where, message):
    failures.append(f"{where}: {message}")
    print(f"FAIL {where}: {message}", flush=True)


class Page:
    """A Markdown page: its lines outside fences, its headings, its fenced blocks."""

    def __init__(self, root, rel):
        self.rel = rel
        self.path = os.path.join(root, rel)
        with open(self.path, encoding="utf-8") as f:
            self.lines = f.read().split("\n")
        self.prose = []    # (line number, text) outside fences
        self.headings = []  # (line number, level, text)
        self.blocks = []   # (line number of the fence, info string, text, marker or None)
        fence, info, start, body, marker = None, "", 0, [], None
        pending = None  # a doc-test marker waiting for its block: (line, setup)
        for n, line in enumerate(self.lines, 1):
            m = fence_of(line)
            if fence is None:
                if m:
                    fence, info, start, body = m.group(1), (m.group(2).split() or [""])[0], n, []
                    marker, pending = pending, None
                    continue
                mk = MARKER.match(line.strip())
                if mk:
                    pending = (n, mk.group(1) or "")
                    continue
                if pending and line.strip():
                    fail(f"{rel}:{pending[0]}", "<!-- doc-test --> is not followed by a ```sh block")
                    pending = None
                self.prose.append((n, line))
                h = HEADING.match(line)
                if h:
                    self.headings.append((n, len(h.group(1)), h.group(2)))
            elif m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence) and not m.group(2).strip():
                self.blocks.append((start, info, "\n".join(body), marker))
                fence = None
            else:
                body.append(line)
        if pending:
            fail(f"{rel}:{pending[0]}", "<!-- doc-test --> is not followed by a ```sh block")

    def anchors(self):
        seen, out = {}, set()
        for _, _, text in self.headings:
            a = slug(text)
            k = seen.get(a, 0)
            seen[a] = k + 1
            out.add(a if k == 0 else f"{a}-{k}")
        return out

    def sections(self):
        """(heading line, heading text, text of the section up to the next heading of its level or above)."""
        out = []
        for i, (n, level, text) in enumerate(self.headings):
            end = len(self.lines) + 1
            for n2, level2, _ in self.headings[i + 1:]:
                if level2 <= level:
                    end = n2
                    break
            out.append((n, text, "\n".join(self.lines[n - 1:end - 1])))
        return out


def fence_of(line):
    """The match of a code fence line (CommonMark: at most 3 spaces of indent, no backtick in a backtick fence's info)."""
    m = FENCE.match(line)
    if m and m.group(1)[0] == "`" and "`" in m.group(2):
        return None
    return m


def slug(text):
    """GitHub's anchor of a heading: links reduced to their text, lower case, punctuation dropped, spaces to '-'."""
    t = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text).lower()
    t = re.sub(r"<[^>]+>", "", t)
    t = re.sub(r"[^\w\- ]", "", t)
    return t.replace(" ", "-")


def markdown_pages(root):
    pages = ["README.md"] + sorted(
        os.path.join("docs", f) for f in os.listdir(os.path.join(root, "docs")) if f.endswith(".md"))
    return {rel: Page(root, rel) for rel in pages}


def check_links(root, pages):
    count = 0
    for rel, page in pages.items():
        for n, line in page.prose:
            for target in LINK.findall(CODE_SPAN.sub("", line)):
                if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
                    continue
                count += 1
                path, _, fragment = target.partition("#")
                where = f"{rel}:{n}"
                if path:
                    resolved = os.path.normpath(os.path.join(os.path.dirname(page.path), path))
                    if not resolved.startswith(os.path.abspath(root) + os.sep) or not os.path.exists(resolved):
                        fail(where, f"link to {target}: no such file in the repository")
                        continue
                    other = os.path.relpath(resolved, root)
                else:
                    other = rel
                if fragment:
                    if not other.endswith(".md"):
                        fail(where, f"link to {target}: a #fragment of a file that is not Markdown")
                        continue
                    target_page = pages.get(other) or Page(root, other)
                    if fragment not in target_page.anchors():
                        fail(where, f"link to {target}: {other} has no heading with anchor #{fragment}")
    print(f"links: {count} relative links checked", flush=True)


def check_readme_commands(pages):
    readme = pages["README.md"]
    lines = [l.strip() for _, info, text, _ in readme.blocks if info == "sh" for l in text.split("\n")]
    for command in README_COMMANDS:
        if not any(l == command or l.startswith(command + " ") for l in lines):
            fail("README.md", f"the command {command} is not a line of a ```sh block")
    print(f"readme: {', '.join(README_COMMANDS)} checked", flush=True)


def check_readme_snippets(root, pages):
    """Every code line of a ```cpp block of the README is a line of the example it links before it."""
    readme = pages["README.md"]
    sources = [(n, t) for n, line in readme.prose for t in LINK.findall(line)
               if t.startswith("apps/examples/") and t.endswith(".cpp")]
    for start, info, text, _ in readme.blocks:
        if info != "cpp":
            continue
        linked = [t for n, t in sources if n < start]
        if not linked:
            fail(f"README.md:{start}", "a ```cpp block without a link to the example (apps/examples/*/*.cpp) it is from")
            continue
        with open(os.path.join(root, linked[-1]), encoding="utf-8") as f:
            lines = {l.strip() for l in f}
        for k, line in enumerate(text.split("\n"), start + 1):
            if line.strip() and not line.strip().startswith("//") and line.strip() not in lines:
                fail(f"README.md:{k}", f"not a line of {linked[-1]}: {line.strip()}")


def help_text(metalm, words):
    r = subprocess.run([metalm, *words, "--help"], capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        fail(f"metalm {' '.join(words)} --help", f"exit {r.returncode}: {r.stderr.strip()}")
    return r.stdout


def subcommands(text):
    """The subcommand names of a CLI11 help text (its SUBCOMMANDS: section)."""
    names, inside = [], False
    for line in text.split("\n"):
        if re.match(r"(?i)^subcommands:", line):
            inside = True
            continue
        if inside:
            m = re.match(r"^\s{2}([a-z][a-z0-9-]*)\s", line + " ")
            if m:
                names.append(m.group(1))
            elif line.strip() and not line.startswith(" "):
                inside = False
    return names


def options_part(text):
    """A CLI11 help text up to its SUBCOMMANDS: section."""
    return re.split(r"(?im)^subcommands:", text)[0]


def long_options(text):
    return sorted(set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", text)) - {"--help"})


def check_options(metalm, pages):
    cli = pages["docs/cli.md"]
    sections = cli.sections()
    top = help_text(metalm, [])
    commands = subcommands(top)
    # Every `--help` of a tensor command loads libtorch (most of a second): all at once.
    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        helps_of = dict(zip(commands, pool.map(lambda c: help_text(metalm, [c]), commands)))
        nested = [(c, s) for c in commands for s in subcommands(helps_of[c])]
        helps_of.update(zip(nested, pool.map(lambda cs: help_text(metalm, list(cs)), nested)))
    if not commands:
        fail("metalm --help", "lists no subcommands")
    globals_ = "\n".join(body for _, heading, body in sections if heading.startswith("Global options"))
    for option in long_options(options_part(top)):
        if f"`{option}" not in globals_:
            fail("docs/cli.md", f"the global option {option} of `metalm --help` is not in its section 'Global options'")
    checked = 0
    for command in commands:
        words = [command]
        text = helps_of[command]
        subs = subcommands(text)
        own = [(n, body) for n, heading, body in sections if f"`metalm {command}`" in heading
               or f"`metalm {command} " in heading]
        if not own:
            fail("docs/cli.md", f"no section's heading names `metalm {command}`")
            continue
        body = "\n".join(b for _, b in own)
        helps = [(words, text)] + [(words + [s], helps_of[(command, s)]) for s in subs]
        for w, t in helps:
            for option in long_options(options_part(t)):
                checked += 1
                if option in ("--threads", "--log-level", "--version"):
                    continue
                if not re.search(re.escape(option) + r"(?![\w-])", body):
                    fail(f"docs/cli.md:{own[0][0]}", f"`metalm {' '.join(w)} --help` lists {option}, "
                         f"which its section does not mention")
    print(f"options: {len(commands)} commands, {checked} options checked", flush=True)


# ---- the examples' scratch directory ----

def brown_corpus(root, out_dir, files=24):
    """Brown-format files (tagged words, tab-indented paragraphs) made from docs/design.md."""
    with open(os.path.join(root, "docs", "design.md"), encoding="utf-8") as f:
        words = [w for w in re.findall(r"[A-Za-z][A-Za-z'-]*", f.read())]
    os.makedirs(out_dir)
    per = max(1, len(words) // files)
    for i in range(files):
        chunk = words[i * per:(i + 1) * per]
        paragraphs = [chunk[j:j + 40] for j in range(0, len(chunk), 40)]
        text = "\n\n".join("\t" + " ".join(f"{w}/nn" for w in p) + " ./." for p in paragraphs)
        name = f"c{'abcdefghjklmnpr'[i // 9]}{i % 9 + 1:02d}"
        with open(os.path.join(out_dir, name), "w", encoding="utf-8") as f:
            f.write("\n\n" + text + "\n")


def shrink(config, rel):
    """A preset cut to seconds: same name, data and architecture; tiny width, depth and budget."""
    if rel.startswith(os.path.join("configs", "icl")):
        task, model = config.setdefault("task", {}), config.setdefault("model", {})
        task.update(d_x=min(task.get("d_x", 10), 4), n=8)
        model["layers"] = min(model.get("layers", 1), 2)
        config.setdefault("train", {}).update(steps=4, batch_size=16, log_every=2, eval_every=2,
                                              eval_tasks=32, checkpoint_every=2, warmup_steps=1)
        return config
    model = config.setdefault("model", {})
    heads = model.get("n_head", 4)
    model.update(context=min(model.get("context", 256), 64), d_model=8 * heads,
                 n_layer=min(model.get("n_layer", 4), 2), d_mlp=0)
    train = config.setdefault("train", {})
    steps = 10
    train.update(steps=steps, batch_size=4, grad_accum=1, warmup_steps=2, eval_every=5, eval_batches=2,
                 log_every=5, ckpt_every=steps,
                 save_steps=[s for s in train.get("save_steps", []) if s <= steps])
    analysis = config.setdefault("analysis", {})
    analysis.update(every=steps if analysis.get("every", 0) else 0, batches=1, batch_size=2)
    return config


def scratch_directory(root, metalm, scratch):
    os.makedirs(os.path.join(scratch, "bin"))
    os.symlink(os.path.abspath(metalm), os.path.join(scratch, "bin", "metalm"))
    os.symlink(os.path.join(root, "scripts"), os.path.join(scratch, "scripts"))
    brown_corpus(root, os.path.join(scratch, "data", "brown"))
    data = os.environ.get("METALM_DATA") or os.path.join(root, "data")
    gpt2 = os.path.join(data, "gpt2")
    if not all(os.path.isfile(os.path.join(gpt2, f)) for f in ("encoder.json", "vocab.bpe")):
        gpt2 = os.path.join(root, "tests", "data", "fixtures", "tiny_bpe")
    os.symlink(os.path.abspath(gpt2), os.path.join(scratch, "data", "gpt2"))
    for base, _, files in os.walk(os.path.join(root, "configs")):
        for name in files:
            if not name.endswith(".json"):
                continue
            rel = os.path.relpath(os.path.join(base, name), root)
            with open(os.path.join(root, rel), encoding="utf-8") as f:
                config = json.load(f)
            os.makedirs(os.path.join(scratch, os.path.dirname(rel)), exist_ok=True)
            with open(os.path.join(scratch, rel), "w", encoding="utf-8") as f:
                json.dump(shrink(config, rel), f, indent=1)


def run_page(root, metalm, rel, page):
    """Runs the marked blocks of one page in order in a fresh scratch directory; stops at the first failure."""
    marked = [(n, text, marker) for n, info, text, marker in page.blocks if marker is not None]
    for n, info, _, marker in page.blocks:
        if marker is not None and info != "sh":
            fail(f"{rel}:{n}", f"a doc-test block must be ```sh, not ```{info}")
    if not marked:
        fail(rel, "has no <!-- doc-test --> example")
        return
    scratch = tempfile.mkdtemp(prefix="metalm-doc-")
    try:
        scratch_directory(root, metalm, scratch)
        # One torch thread per command, as scripts/test.sh runs the suite.
        env = dict(os.environ, PATH=os.path.join(scratch, "bin") + os.pathsep + os.environ.get("PATH", ""),
                   XDG_CACHE_HOME=os.path.join(scratch, "cache"), METALM_DATA=os.path.join(scratch, "data"),
                   MPLBACKEND="Agg", OMP_WAIT_POLICY="passive", OMP_NUM_THREADS="1", DOC_TEST_SOURCE=root)
        for i, (n, text, (_, setup)) in enumerate(marked):
            script = "set -euo pipefail\n" + (setup + "\n" if setup else "") + text + "\n"
            began = time.monotonic()
            try:
                r = subprocess.run(["bash", "-c", script], cwd=scratch, env=env, capture_output=True,
                                   text=True, errors="replace", timeout=BLOCK_TIMEOUT_S)
                rc, out = r.returncode, (r.stdout + r.stderr)
            except subprocess.TimeoutExpired as e:
                rc, out = "timeout", str(e)
            took = time.monotonic() - began
            if rc != 0:
                tail = "\n".join(out.strip().split("\n")[-15:])
                later = len(marked) - i - 1
                fail(f"{rel}:{n}", f"the example exited {rc} after {took:.1f} s"
                     f"{f' ({later} later block(s) of the page not run)' if later else ''}:\n{text}\n"
                     f"--- its output ends:\n{tail}")
                return
            print(f"ok   {rel}:{n} ({took:.1f} s)", flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def main():
    if len(sys.argv) not in (3, 5) or (len(sys.argv) == 5 and (sys.argv[3] != "--only" or sys.argv[4] not in (
            "links", "readme", "options", "examples"))):
        print(__doc__.strip().split("\n\n")[1], file=sys.stderr)
        return 2
    metalm, root = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    only = sys.argv[4] if len(sys.argv) == 5 else None
    pages = markdown_pages(root)
    if only in (None, "links"):
        check_links(root, pages)
    if only in (None, "readme"):
        check_readme_commands(pages)
        check_readme_snippets(root, pages)
    # The options check and each page's examples are independent: run them side by side.
    jobs = []
    if only in (None, "options"):
        jobs.append(lambda: check_options(metalm, pages))
    if only in (None, "examples"):
        jobs += [lambda rel=rel: run_page(root, metalm, rel, pages[rel]) for rel in PAGES_WITH_EXAMPLES]
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(jobs) or 1) as pool:
        for job in [pool.submit(j) for j in jobs]:
            job.result()
    print(f"{len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
