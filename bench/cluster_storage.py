#!/usr/bin/env python3
"""Storage scalability: a cluster of 3 nodes with M of cache each against 1 node with
3M, on the same Zipf(0.9) trace whose objects do not all fit, in one run.

Each object is GET http://origin/bytes/4096?k=N (one of --objects, ranked for the Zipf
draw), asked through the nodes as forward proxies. The trace is three seeded Zipf draws
(distill-load, one seed each) run side by side: through the cluster each enters at its
own node (every node takes any request and forwards it to the owner); the single node
gets the same three. Reported: hit ratio (Cache-Status of the
cache nearest the origin), origin fetches (distill-origin's own count), and the bytes the
caches hold against the bodies of the distinct objects they hold (from each node's
/metrics). Targets: hit ratio within 2 points, origin fetches within 5%, stored bytes
<= 1.15 x unique bytes. Every response must be 2xx; the runs are checked.
"""

import argparse
import json
import os
import sys
import urllib.request

import benchlib as b

ORIGIN = 19091
NODES = [(19092, 19192), (19093, 19193), (19094, 19194)]  # (http, admin)
NODES_NO_NEAR = [(19096, 19196), (19097, 19197), (19098, 19198)]
ALONE = (19095, 19195)
SIZE = 4096


def config(memory, me=None, near=None, members=NODES):
    """`near`: cluster.near_cache_bytes (None: the shipped default, 1/64 of memory)."""
    cfg = b.distilld_config(cache={"memory_bytes": memory})
    if me is None:
        return cfg
    nodes = "".join(f'[[cluster.nodes]]\nid = "n{i}"\nhttp = "127.0.0.1:{p}"\n' for i, (p, _) in enumerate(members))
    near_key = "" if near is None else f"near_cache_bytes = {near}\n"
    return cfg + f'[cluster]\nnode = "{me}"\n{near_key}' + nodes


def metric(admin, name):
    text = urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=5).read().decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise b.BadRun(f"no {name} in :{admin}/metrics")


def near_bytes(admin):
    """The near-cache's copies (a cluster node's duplicates of objects owned elsewhere)."""
    try:
        return metric(admin, "distilld_cluster_near_bytes")
    except b.BadRun:
        return 0.0


def origin_requests():
    with urllib.request.urlopen(f"http://127.0.0.1:{ORIGIN}/stats", timeout=5) as r:
        return json.load(r)["requests"]


def trace(args, tmp):
    path = os.path.join(tmp, "urls.txt")
    with open(path, "w") as f:
        for k in range(args.objects):
            f.write(f"http://127.0.0.1:{ORIGIN}/bytes/{SIZE}?k={k}\n")
    return path


def run(args, entries, admins, tmp, what):
    """Three seeded draws side by side, draw i through entries[i % len(entries)]."""
    before = origin_requests()
    urls = trace(args, tmp)
    argvs = [["-c", "8", "-n", str(args.requests // 3), "--proxy", f"127.0.0.1:{entries[i % len(entries)]}",
              "--urls", urls, "--zipf", "0.9", "--seed", str(7 + i)] for i in range(3)]
    reports = b.draws_side_by_side(argvs, what)
    runs = [b.parse_distill_load(rep) for rep in reports]
    for i, run_ in enumerate(runs):
        b.check_run(run_, f"{what} draw {i}")
    r = {**runs[0], "requests": sum(x["requests"] for x in runs)}
    fetches = origin_requests() - before - 1  # the /stats request before counts
    cache = {k: sum(rep["cache"][k] for rep in reports) for k in ("hits", "lookups")}
    objects = sum(metric(a, "distilld_cache_objects") for a in admins)
    near = sum(near_bytes(a) for a in admins)
    # Unique: each object once, at its owner; near copies are duplicates, so they count
    # in the stored bytes only.
    stored = sum(metric(a, "distilld_cache_bytes") for a in admins) + near
    return {**r, "hit_ratio": cache["hits"] / max(1, cache["lookups"]), "lookups": cache["lookups"],
            "origin_fetches": fetches, "objects": objects, "stored_bytes": stored, "near_bytes": near,
            "stored_per_unique": stored / max(1.0, objects * SIZE)}


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--memory-mib", type=int, default=16, help="M: each node's cache")
    ap.add_argument("--objects", type=int, default=40000)
    ap.add_argument("--requests", type=int, default=200000)
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    b.ensure(())
    m = args.memory_mib << 20
    with b.Servers() as s:
        s.origin(ORIGIN, extra=["--cache-control", "public, max-age=3600"])
        for i, (port, admin) in enumerate(NODES):
            s.distilld(port, config=config(m, f"n{i}"), admin=f"127.0.0.1:{admin}")
        for i, (port, admin) in enumerate(NODES_NO_NEAR):
            s.distilld(port, config=config(m, f"n{i}", near=0, members=NODES_NO_NEAR), admin=f"127.0.0.1:{admin}")
        s.distilld(ALONE[0], config=config(3 * m), admin=f"127.0.0.1:{ALONE[1]}")
        cluster = run(args, [p for p, _ in NODES], [a for _, a in NODES], s.tmp, "3 nodes x M")
        no_near = run(args, [p for p, _ in NODES_NO_NEAR], [a for _, a in NODES_NO_NEAR], s.tmp,
                      "3 nodes x M, near-cache off")
        alone = run(args, [ALONE[0]], [ALONE[1]], s.tmp, "1 node x 3M")
    b.check_runs([cluster], [no_near], [alone])
    unique_mib = args.objects * SIZE / 2**20
    print(f"trace: {args.requests} requests, Zipf(0.9) over {args.objects} objects of {SIZE} B "
          f"({unique_mib:.0f} MiB, > 3M = {3 * args.memory_mib} MiB)")
    print(f"{'':<28} {'hit ratio':>10} {'origin fetches':>15} {'objects':>9} {'stored/unique':>14}")
    rows = (("3 nodes x M (shipped)", cluster), ("3 nodes x M, near-cache off", no_near), ("1 node x 3M", alone))
    for name, r in rows:
        print(f"{name:<28} {r['hit_ratio']:>10.4f} {r['origin_fetches']:>15} {int(r['objects']):>9} "
              f"{r['stored_per_unique']:>14.3f}")
    for name, r in rows[:2]:
        print(f"{name}: hit ratio {100 * (r['hit_ratio'] - alone['hit_ratio']):+.2f} points (target within 2), "
              f"origin fetches {r['origin_fetches'] / max(1, alone['origin_fetches']):.3f}x (target within 5%)")
    b.write_json(args.json, {"benchmark": "cluster-storage", "args": vars(args), "cluster": cluster,
                             "cluster_no_near": no_near, "alone": alone})


if __name__ == "__main__":
    b.run_main(main, sys.argv[1:])
