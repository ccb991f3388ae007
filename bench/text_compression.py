#!/usr/bin/env python3
"""Text compression on the corpus's text files (HTML, CSS, JS, JSON, SVG): for zstd, br
and gzip at several levels, distilld's own compression (in-process, one core) gives the
bytes saved and MB/s; beside it the `gzip -6` and `zstd -3` command-line tools on the same
files (their MB/s includes one process start per file, so it is a floor).
The levels distilld uses (src/distill/text.rs) are marked with *.
"""

import argparse
import glob
import json
import os
import subprocess
import sys
import time

import benchlib as b

CHOSEN = {"zstd": 6, "br": 5, "gzip": 6}


def cli(cmd, files):
    total_in = total_out = 0
    t = time.perf_counter()
    for f in files:
        out = subprocess.run([*cmd, "-c", f], capture_output=True, check=True).stdout
        total_in += os.path.getsize(f)
        total_out += len(out)
    return total_in, total_out, time.perf_counter() - t


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iters", type=int, default=3)
    args = ap.parse_args(argv)
    b.ensure_packages({"zstd": "zstd", "gzip": "gzip"})
    subprocess.run(["cargo", "build", "--release", "--quiet", "--example", "compress_bench"], cwd=b.ROOT, check=True)
    files = sorted(f for ext in ("html", "css", "js", "json", "svg")
                   for f in glob.glob(os.path.join(b.CORPUS, f"*.{ext}")))
    out = subprocess.run(["taskset", "-c", b.SERVER_CORE,
                          os.path.join(b.ROOT, "target", "release", "examples", "compress_bench"),
                          "--iters", str(args.iters), *files], capture_output=True, text=True, check=True).stdout
    print(f"{len(files)} files, {sum(os.path.getsize(f) for f in files) / 1e6:.2f} MB")
    print(f"{'coding':8} {'level':>5} {'saved':>7} {'MB/s':>8}")
    for r in map(json.loads, out.splitlines()):
        mark = "*" if CHOSEN.get(r["coding"]) == r["level"] else " "
        saved = 100 * (1 - r["output"] / r["input"])
        print(f"{r['coding']:8} {r['level']:>4}{mark} {saved:6.1f}% {r['input'] / 1e6 / r['seconds']:8.1f}")
    for name, cmd in (("gzip -6", ["gzip", "-6"]), ("zstd -3", ["zstd", "-3", "-q"])):
        i, o, s = cli(["taskset", "-c", b.SERVER_CORE, *cmd], files)
        print(f"{name:14} {100 * (1 - o / i):6.1f}% {i / 1e6 / s:8.1f}  (command line, per-file process start included)")


if __name__ == "__main__":
    main(sys.argv[1:])
