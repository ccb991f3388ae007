#!/usr/bin/env python3
"""One hop: cache hits through a node that does not own the URL vs directly at the owner,
per CPU-second of both nodes together, in one run, A B C A B C.

Two clusters of two nodes on 127.0.0.1, all four pinned to core 1; distill-load (50
connections) and the origin on core 0. One cluster runs the shipped defaults plus
[cluster] (the near-cache on: a hot URL owned elsewhere is answered by the node it
reaches, once it was forwarded a few times, for at most 10 s per copy); the other the
same with `cluster.near_cache_bytes = 0`, so every request through the first node
crosses the hop. The URL is GET /bytes/1024?k=N for the first N the second node owns.
Every sample before and after each run must be a hit: at the owner (its Cache-Status
member says `hit`); through the first node without the near-cache, also naming the owner
(`detail=owner-b`); with it, a near copy (`detail=near`). On a 2-core machine the nodes
share one core: the figure is the cost of the hop in CPU, which is what it is on a real
cluster too (the owner's work is the same either way). Target: >= 0.6.
"""

import argparse
import sys

import benchlib as b

ORIGIN, A, B, A2, B2 = 18991, 18992, 18993, 18994, 18995


def cluster_config(me, a, bb, near=True):
    nodes = "".join(f'[[cluster.nodes]]\nid = "{i}"\nhttp = "127.0.0.1:{p}"\n' for i, p in (("a", a), ("b", bb)))
    off = "" if near else "near_cache_bytes = 0\n"
    return b.distilld_config() + f'[cluster]\nnode = "{me}"\n{off}' + nodes


def owned_by_b(r):
    return b.distilld_hit(r) and "detail=owner-b" in (r.header("cache-status") or "")


def near_copy(r):
    return b.distilld_hit(r) and "detail=near" in (r.header("cache-status") or "")


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=int, default=4)
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    b.ensure(())
    with b.Servers() as s:
        s.origin(ORIGIN)
        configs = {"a": cluster_config("a", A, B), "b": cluster_config("b", A, B),
                   "a (near off)": cluster_config("a", A2, B2, near=False),
                   "b (near off)": cluster_config("b", A2, B2, near=False)}
        b.print_settings(configs)
        near_pair = s.distilld(A, ORIGIN, config=configs["a"]) + s.distilld(B, ORIGIN, config=configs["b"])
        plain_pair = (s.distilld(A2, ORIGIN, config=configs["a (near off)"])
                      + s.distilld(B2, ORIGIN, config=configs["b (near off)"]))
        path = None
        for k in range(64):
            candidate = f"/bytes/1024?k={k}"
            b.sample(A2, candidate, n=2, what="find a key b owns")
            if owned_by_b(b.http_get(A2, candidate)):
                path = candidate
                break
        if path is None:
            raise b.BadRun("no key of 64 is owned by b")
        # The same node list: the same owner in the other cluster.
        b.sample(A, path, n=2, what="fill the owner")
        r = b.http_get(A, path)
        if not (owned_by_b(r) or near_copy(r)):
            raise b.BadRun("b does not own the key in the near-cache cluster")

        def run(port, name, hit, pids):
            b.sample(port, path, n=8, what=f"{name} warm-up")  # a near copy is admitted
            b.sample(port, path, n=5, hit=hit, what=f"{name} before")
            url = f"http://127.0.0.1:{port}{path}"
            r = b.measured(lambda: b.distill_load(url, args.seconds, 50, what=name), pids)
            b.sample(port, path, n=5, hit=hit, what=f"{name} after")
            return r

        near, plain, direct = [], [], []
        for i in range(args.rounds):
            near.append(run(A, "through a, near-cache on", near_copy, near_pair))
            plain.append(run(A2, "through a, near-cache off", owned_by_b, plain_pair))
            direct.append(run(B, "at the owner", b.distilld_hit, near_pair))
            print(f"  round {i + 1}: near {near[-1]['rps_per_cpu']:.0f}/cpu-s, hop {plain[-1]['rps_per_cpu']:.0f}/cpu-s,"
                  f" owner {direct[-1]['rps_per_cpu']:.0f}/cpu-s", file=sys.stderr)
    b.check_runs(near, plain, direct)
    print(f"url {path}: owned by b")
    results = {"benchmark": "cluster-hop", "args": vars(args), "path": path}
    results["near"] = b.summarize("cache hits through a (shipped defaults: near-cache on), per CPU-second of both"
                                  " nodes", near, direct, "through a", "at owner")
    results["hop"] = b.summarize("cache hits through a with the near-cache off (every request hops), per"
                                 " CPU-second of both nodes", plain, direct, "through a", "at owner")
    b.write_json(args.json, results)


if __name__ == "__main__":
    b.run_main(main, sys.argv[1:])
