#!/usr/bin/env python3
"""Before vs after a change that should not cost speed (a refactor): this tree's release
build against another revision's, in one run, A B A B, on the two paths every request
takes: cache hits and proxying.

  hits   GET /bytes/1024 answered from the cache (shipped defaults; every sample before
         and after each measured run must be a hit)
  proxy  GET /bytes/1024 proxied to distill-origin (shipped defaults, cache off)

The other revision is built in a git worktree (`--before REV`: the commit the change
started from) into its own target directory, or taken as a binary (`--before-bin`). Server pinned to core 1, client and origin to core 0;
requests per server CPU-second (from /proc) beside raw requests per second. Any non-2xx
answer or a miss where a hit was meant fails the run before a table is printed.
"""

import argparse
import os
import subprocess
import sys

import benchlib as b

ORIGIN, HITS_AFTER, HITS_BEFORE, PROXY_AFTER, PROXY_BEFORE = 18791, 18792, 18793, 18794, 18795
PATH = "/bytes/1024"


def build_before(rev, target):
    """Builds `rev`'s distilld into `target` (a worktree beside the build, removed after)."""
    tree = os.path.join(target, "tree")
    subprocess.run(["git", "-C", b.ROOT, "worktree", "remove", "--force", tree], capture_output=True)
    subprocess.run(["git", "-C", b.ROOT, "worktree", "add", "--force", "--detach", tree, rev], check=True,
                   capture_output=True)
    try:
        subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "distilld"], cwd=tree, check=True,
                       env={**os.environ, "CARGO_TARGET_DIR": target})
    finally:
        subprocess.run(["git", "-C", b.ROOT, "worktree", "remove", "--force", tree], capture_output=True)
    return os.path.join(target, "release", "distilld")


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", default="HEAD~1", help="git revision to compare against (default HEAD~1)")
    ap.add_argument("--before-bin", help="a distilld binary to compare against (instead of building --before)")
    ap.add_argument("--target", default="/tmp/distilld-before-target")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--seconds", type=int, default=4)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    b.ensure(())
    before = args.before_bin or build_before(args.before, args.target)
    # Reverse proxying only (no destination rules apply), so an older build reads both.
    hits_cfg = b.distilld_config(loopback=False)
    proxy_cfg = b.distilld_config(loopback=False, cache={"memory_bytes": 0})
    turns = {}
    with b.Servers() as s:
        s.origin(ORIGIN)
        pids = {
            ("hits", "after"): (HITS_AFTER, s.distilld(HITS_AFTER, ORIGIN, config=hits_cfg)),
            ("hits", "before"): (HITS_BEFORE, s.distilld(HITS_BEFORE, ORIGIN, config=hits_cfg, binary=before)),
            ("proxy", "after"): (PROXY_AFTER, s.distilld(PROXY_AFTER, ORIGIN, config=proxy_cfg)),
            ("proxy", "before"): (PROXY_BEFORE, s.distilld(PROXY_BEFORE, ORIGIN, config=proxy_cfg, binary=before)),
        }
        for (kind, side), (port, _) in pids.items():
            b.sample(port, PATH, n=2, what=f"{kind} {side} fill")

        def run(kind, side):
            port, p = pids[(kind, side)]
            hit = b.distilld_hit if kind == "hits" else None
            what = f"{kind} {side}"
            b.sample(port, PATH, n=5, hit=hit, what=f"{what} before")
            url = f"http://127.0.0.1:{port}{PATH}"
            r = b.measured(lambda: b.distill_load(url, args.seconds, args.connections, what=what), p)
            b.sample(port, PATH, n=5, hit=hit, what=f"{what} after")
            return r

        for kind in ("hits", "proxy"):
            turns[kind] = b.alternate(args.rounds, lambda: run(kind, "after"), lambda: run(kind, "before"), kind)
    b.check_runs(*(runs for pair in turns.values() for runs in pair))
    print(f"before: {args.before_bin or args.before}; after: this tree's release build")
    b.print_settings({"hits": hits_cfg, "proxy": proxy_cfg})
    results = {"benchmark": "before-after", "args": vars(args)}
    for kind, (a_runs, b_runs) in turns.items():
        results[kind] = b.summarize(kind, a_runs, b_runs, "after", "before")
    b.write_json(args.json, results)


if __name__ == "__main__":
    b.run_main(main, sys.argv[1:])
