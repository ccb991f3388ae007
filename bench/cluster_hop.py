#!/usr/bin/env python3
"""One hop: cache hits through a node that does not own the URL (it forwards to the
owner, which answers from its cache) vs directly at the owner, per CPU-second of both
nodes together, in one run, A B A B.

Two nodes of one cluster on 127.0.0.1 (two ports), both pinned to core 1, with the
shipped defaults plus [cluster]; distill-load (50 connections) and the origin on core 0.
The URL is GET /bytes/1024?k=N for the first N the second node owns. Every sample before
and after each run must be a hit at the owner (its Cache-Status member says `hit`), and
through the first node it must also name the owner (`detail=owner-b`). On a 2-core
machine both nodes share one core: the figure is the cost of the hop in CPU, which is
what it is on a real cluster too (the owner's work is the same either way). Target:
>= 0.6.
"""

import argparse
import sys

import benchlib as b

ORIGIN, A, B = 18991, 18992, 18993


def cluster_config(me):
    nodes = "".join(f'[[cluster.nodes]]\nid = "{i}"\nhttp = "127.0.0.1:{p}"\n' for i, p in (("a", A), ("b", B)))
    return b.distilld_config() + f'[cluster]\nnode = "{me}"\n' + nodes


def owned_by_b(r):
    return b.distilld_hit(r) and "detail=owner-b" in (r.header("cache-status") or "")


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=int, default=4)
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    b.ensure(())
    with b.Servers() as s:
        s.origin(ORIGIN)
        pa = s.distilld(A, ORIGIN, config=cluster_config("a"))
        pb = s.distilld(B, ORIGIN, config=cluster_config("b"))
        both = pa + pb
        path = None
        for k in range(64):
            candidate = f"/bytes/1024?k={k}"
            b.sample(A, candidate, n=2, what="find a key b owns")
            if owned_by_b(b.http_get(A, candidate)):
                path = candidate
                break
        if path is None:
            raise b.BadRun("no key of 64 is owned by b")

        def run(port, name, hit):
            b.sample(port, path, n=5, hit=hit, what=f"{name} before")
            url = f"http://127.0.0.1:{port}{path}"
            r = b.measured(lambda: b.distill_load(url, args.seconds, 50, what=name), both)
            b.sample(port, path, n=5, hit=hit, what=f"{name} after")
            return r

        hop, direct = b.alternate(args.rounds, lambda: run(A, "through a", owned_by_b),
                                  lambda: run(B, "at the owner", b.distilld_hit), "one hop")
    b.check_runs(hop, direct)
    print(f"url {path}: owned by b; 'through a' forwards every request to b")
    results = {"benchmark": "cluster-hop", "args": vars(args), "path": path}
    results["hits"] = b.summarize("cache hits, per CPU-second of both nodes", hop, direct, "through a", "at owner")
    b.write_json(args.json, results)


if __name__ == "__main__":
    b.run_main(main, sys.argv[1:])
