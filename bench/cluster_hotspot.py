#!/usr/bin/env python3
"""Performance scalability under a hot spot: three nodes of one cluster, asked a
Zipf(1.1) trace through all three at once, with bounded load on (balance_factor 1.25,
the shipped default) and off (0), A B A B. Reported: each node's CPU time over the run
(from /proc) as max/mean across the three; target <= 1.25 with bounded load on.

Each setup is three nodes on 127.0.0.1 (their own ports), all on core 1; three
distill-load draws (seeds 7, 8, 9; 8 connections each) on core 0, each entering at its
own node, as a forward proxy, over 2,000 objects of 1 KiB. Every response must be 2xx.
"""

import argparse
import os
import sys

import benchlib as b

ORIGIN = 19391
SETUPS = {"bounded": ([19392, 19393, 19394], 1.25), "unbounded": ([19395, 19396, 19397], 0)}


def config(ports, me, factor):
    nodes = "".join(f'[[cluster.nodes]]\nid = "n{i}"\nhttp = "127.0.0.1:{p}"\n' for i, p in enumerate(ports))
    return b.distilld_config() + f'[cluster]\nnode = "n{me}"\nbalance_factor = {factor}\n' + nodes


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--objects", type=int, default=2000)
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    b.ensure(())
    results = {name: [] for name in SETUPS}
    with b.Servers() as s:
        s.origin(ORIGIN)
        urls = os.path.join(s.tmp, "urls.txt")
        with open(urls, "w") as f:
            f.writelines(f"http://127.0.0.1:{ORIGIN}/bytes/1024?h={k}\n" for k in range(args.objects))
        pids = {name: [s.distilld(p, config=config(ports, i, factor))[0] for i, p in enumerate(ports)]
                for name, (ports, factor) in SETUPS.items()}

        def run(name):
            ports = SETUPS[name][0]
            before = [b.cpu_ticks([p]) for p in pids[name]]
            argvs = [["-c", "8", "-d", str(args.seconds), "--proxy", f"127.0.0.1:{ports[i]}",
                      "--urls", urls, "--zipf", "1.1", "--seed", str(7 + i)] for i in range(3)]
            reports = b.draws_side_by_side(argvs, name)
            cpu = [(b.cpu_ticks([p]) - t0) / b.CLK_TCK for p, t0 in zip(pids[name], before)]
            mean = sum(cpu) / len(cpu)
            requests = sum(rep["requests"] for rep in reports)
            r = {"cpu_s": cpu, "max_over_mean": max(cpu) / mean if mean else 0.0, "requests": requests}
            print(f"  {name}: cpu {[round(c, 2) for c in cpu]} max/mean {r['max_over_mean']:.3f} "
                  f"({requests} requests)", file=sys.stderr)
            return r

        for _ in range(args.rounds):
            for name in SETUPS:
                results[name].append(run(name))
    print(f"{'setup':<10} {'max/mean node CPU: median':>26} {'min':>6} {'max':>6}")
    summary = {}
    for name, runs in results.items():
        ratios = sorted(r["max_over_mean"] for r in runs)
        summary[name] = {"median": ratios[len(ratios) // 2], "min": ratios[0], "max": ratios[-1]}
        print(f"{name:<10} {summary[name]['median']:>26.3f} {ratios[0]:>6.3f} {ratios[-1]:>6.3f}")
    b.write_json(args.json, {"benchmark": "cluster-hotspot", "args": vars(args), "runs": results, "summary": summary})


if __name__ == "__main__":
    b.run_main(main, sys.argv[1:])
