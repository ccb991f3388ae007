#!/usr/bin/env python3
"""Does distilling large photos stall the other connections of a shard?

One distilld shard (pinned to core 1, with its distillation pool thread) serves a steady
open-loop stream of small cache hits (GET /bytes/1024, 1,000 requests/s, latency from
each request's scheduled time, so stalls are not hidden) while, in the loaded runs, a
second client keeps asking for large corpus photos with `Save-Data: on` (each URL new,
so every one is a real distillation). Three setups take turns, round by round:

  idle     no photo load (the baseline)
  pool     photo load; jobs above inline_bytes_max (16 KiB, the default) on the pool
  inline   photo load; every job inline on the shard (inline_bytes_max = 1 GiB,
           inline_pixels_max = 2^40)

Printed: p50/p99/p99.9/max latency of the small hits in each, and the photo rate.

distilld runs with its shipped defaults (access log on, to /dev/null), inline only
changing distill.inline_bytes_max. Both clients' runs are checked: any non-2xx status or
error fails the benchmark, and every small request must have been a cache hit (its
Cache-Status, as distill-load counts it).
"""

import argparse
import os
import sys
import tempfile
import time

import benchlib as b

ORIGIN, PROXY = 18481, 18482
PHOTOS = ["Elephants_3840x2160.jpg", "LadyBird.jpg", "seeding_by_Clements_Engelhardt.jpg",
          "desktop-base-fullscreenpreview.jpg", "GreenMeadow.jpg"]
CONFIGS = {"idle": b.distilld_config(), "pool": b.distilld_config(),
           "inline": b.distilld_config(distill={"inline_bytes_max": 1073741824,
                                                 "inline_pixels_max": 1 << 40})}


def run(setup, seconds, rate, photo_clients, tmp):
    with b.Servers() as s:
        s.origin(ORIGIN)
        s.distilld(PROXY, ORIGIN, workers=1, config=CONFIGS[setup])
        side = None
        if setup != "idle":
            urls = os.path.join(tmp, "photos.txt")
            with open(urls, "w") as f:
                for i in range(100000):
                    f.write(f"http://127.0.0.1:{PROXY}/{PHOTOS[i % len(PHOTOS)]}?n={setup}{time.time_ns()}-{i}\n")
            side = (urls, ["Save-Data: on"], photo_clients, tmp)
        hits, photos = b.hits_beside(PROXY, "/bytes/1024", seconds, rate, side, label=setup)
    lat = hits["latency_ms"]
    return {"p50": lat["p50"], "p99": lat["p99"], "p999": lat.get("p99_9", 0.0),
            "max": lat.get("max", 0.0), "hits": hits["requests"],
            "photos_per_s": photos["requests_per_sec"] if photos else 0.0}


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=6)
    ap.add_argument("--rate", type=int, default=1000)
    ap.add_argument("--photo-clients", type=int, default=2)
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    b.ensure(("wrk",))
    tmp = tempfile.mkdtemp(prefix="distill-latency-")
    results = {k: [] for k in ("idle", "pool", "inline")}
    for i in range(args.rounds):
        for setup in results:
            r = run(setup, args.seconds, args.rate, args.photo_clients, tmp)
            results[setup].append(r)
            print(f"  round {i + 1} {setup}: p50 {r['p50']:.2f} p99 {r['p99']:.2f} p99.9 {r['p999']:.2f} "
                  f"max {r['max']:.1f} ms, photos {r['photos_per_s']:.1f}/s", file=sys.stderr)
    print(f"\nsmall cache hits at {args.rate}/s on one shard, worst p99 over {args.rounds} rounds (ms):")
    for setup, runs in results.items():
        worst = max(runs, key=lambda r: r["p99"])
        print(f"  {setup:7} p50 {worst['p50']:.2f}  p99 {worst['p99']:.2f}  p99.9 {worst['p999']:.2f}  "
              f"max {max(r['max'] for r in runs):.1f}  photos/s {sum(r['photos_per_s'] for r in runs) / len(runs):.1f}")
    b.write_json(args.json, {"benchmark": "distill-latency", "args": vars(args), "results": results})


if __name__ == "__main__":
    b.run_main(main, sys.argv[1:])
