#!/usr/bin/env python3
"""Cache memory overhead: RSS growth per stored byte.

Starts distilld (1 worker, cache budget large enough to keep everything), reads its RSS,
fills the cache with N distinct objects of SIZE bytes (GET /bytes/SIZE?i=K through
distill-load, each URL once), checks that a second pass is all hits, reads RSS again,
and reports (RSS growth - stored body bytes) / stored body bytes. The target for
10 KiB objects is an overhead of at most 15%.

distilld runs with its shipped defaults (access log on, to /dev/null) but for the cache
budget. Every pass is checked (any non-2xx or error fails the benchmark), and the second
must be all hits, or no overhead is printed: a miss would mean a body not held.
"""

import argparse
import os
import sys

import benchlib as b

ORIGIN, DISTILLD = 18381, 18382


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def load_pass(urls_file, n, what):
    r = b.distill_load_report(["-c", "8", "-n", str(n), "--urls", urls_file, "--cores", b.LOAD_CORE])
    b.check_run(b.parse_distill_load(r), what)
    return r


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--objects", type=int, default=20000)
    ap.add_argument("--size", type=int, default=10240)
    args = ap.parse_args(argv)
    b.ensure(("wrk",))
    budget = args.objects * (args.size + 2048) * 2
    config = b.distilld_config(cache={"memory_bytes": budget})
    with b.Servers() as s:
        s.origin(ORIGIN, ["--cache-control", "public, max-age=3600"])
        pid = s.distilld(DISTILLD, ORIGIN, workers=1, config=config)[0]
        urls = os.path.join(s.tmp, "urls.txt")
        with open(urls, "w") as f:
            for i in range(args.objects):
                f.write(f"http://127.0.0.1:{DISTILLD}/bytes/{args.size}?i={i}\n")
        # One warm-up pass over other URLs so buffers, rings and pools are allocated
        # before the baseline is read.
        warm = os.path.join(s.tmp, "warm.txt")
        with open(warm, "w") as f:
            f.write(f"http://127.0.0.1:{DISTILLD}/healthz\n")
        load_pass(warm, 2000, "warm-up")
        before = rss_bytes(pid)
        fill = load_pass(urls, args.objects, "fill pass")
        second = load_pass(urls, args.objects, "second pass")
        after = rss_bytes(pid)
    stored = args.objects * args.size
    growth = after - before
    c = second["cache"]
    if c["hits"] != second["requests"]:
        raise b.BadRun(f"second pass: {c['hits']} hits of {second['requests']} requests "
                       f"({c['lookups']} with Cache-Status): not every object was held")
    hit_ratio = f"{100 * c['hits'] / c['lookups']:.1f}% ({c['hits']} of {c['lookups']})"
    print(f"distilld: {b.describe_config(config)}")
    print(f"objects {args.objects} x {args.size} B = {stored / 2**20:.1f} MiB of bodies")
    print(f"fill pass: {fill['requests']} requests; second pass hit ratio: {hit_ratio}")
    print(f"RSS before {before / 2**20:.1f} MiB, after {after / 2**20:.1f} MiB, growth {growth / 2**20:.1f} MiB")
    print(f"overhead over stored body bytes: {100 * (growth - stored) / stored:.1f}%")


if __name__ == "__main__":
    b.run_main(main, sys.argv[1:])
