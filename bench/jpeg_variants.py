#!/usr/bin/env python3
"""A smaller JPEG for clients without WebP? Each way of encoding JPEG that jpeg-encoder
offers (quantisation tables: Annex K (today), N. Robidoux's (ImageMagick), MS-SSIM- and
PSNR-HVS-tuned; baseline or progressive) against today's, on the corpus's opaque stills
at the `medium` long edge: bytes at equal SSIMULACRA2 and the encoder's cost.

The pixels are the pipeline's own (distill_bench --reference); only the encoding
differs. Per image, today's output is Annex K baseline at --quality; a variant's bytes
are those of its smallest output (over --qualities) that scores at least as well. Encode
speed is output megapixels per second at --quality, best of --iters, against today's in
the same run. Scoring as in bench/webp.py (SSIMULACRA2, JPEGs decoded by libvips).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

import benchlib as b
import webp as w

VARIANTS = ["annexk+progressive", "robidoux", "robidoux+progressive", "msssim", "psnrhvs"]


def encode(files, args, variant, quality, out_dir, reference=False):
    argv = ["taskset", "-c", w.CORE, os.path.join(b.ROOT, "target", "release", "examples", "distill_bench"),
            "--max-edge", str(args.max_edge), "--quality", str(quality), "--iters", str(args.iters),
            "--out", out_dir, "--jpeg-variant", variant]
    if reference:
        argv += ["--reference", out_dir]
    lines = subprocess.run(argv + files, capture_output=True, text=True, check=True).stdout.splitlines()
    return {r["file"]: r for r in map(json.loads, lines)}


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--max-edge", type=int, default=1024)
    ap.add_argument("--quality", type=int, default=65)
    ap.add_argument("--qualities", default="45,50,55,60,65,70,75,80,85")
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    b.ensure_packages({"vips": "libvips-tools"})
    subprocess.run(["cargo", "build", "--release", "--quiet", "--example", "distill_bench"], cwd=b.ROOT, check=True)
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=w.QUALITY_TOOL, check=True)
    files = sorted(os.path.join(b.CORPUS, f) for f in os.listdir(b.CORPUS)
                   if f.lower().endswith((".jpg", ".png", ".gif")))
    out = tempfile.mkdtemp(prefix="jpeg-variants-")
    today = encode(files, args, "annexk", args.quality, out, reference=True)
    today_path = {n: w.moved(out, n, "today") for n in today}
    made = {}
    variants = args.variants.split(",")
    for v in variants:
        for q in map(int, args.qualities.split(",")):
            for n, r in encode(list(files), args, v, q, out).items():
                made.setdefault(v, {}).setdefault(q, {})[n] = dict(r, path=w.moved(out, n, f"{v}.{q}"))
    ref = {n: os.path.join(out, f"{n}.ref.png") for n in today}
    pairs = [(ref[n], p) for n, p in today_path.items()]
    pairs += [(ref[n], r["path"]) for v in made for q in made[v] for n, r in made[v][q].items()]
    score = w.scores(pairs)
    results = {}
    print(f"\n== JPEG variants vs today's (Annex K baseline, Q {args.quality}), {len(today)} opaque stills, "
          f"long edge {args.max_edge} ==")
    print(f"{'variant':<22} {'bytes at equal score':>22} {'range':>14} {'larger on':>10} {'encode MP/s vs today':>21}")
    print(f"median SSIMULACRA2 of today's output: {statistics.median(score[p] for p in today_path.values()):.1f}")
    for v in variants:
        print(f"  {v}: " + ", ".join(f"Q{q} {statistics.median(score[r['path']] for r in rs.values()):.1f}"
                                    for q, rs in sorted(made[v].items())))
    for v in variants:
        ratios, larger = [], 0
        for n in today:
            target = score[today_path[n]]
            ok = [r["output_bytes"] for q, rs in made[v].items() for m, r in rs.items()
                  if m == n and score[r["path"]] >= target]
            if not ok:
                larger += 1
                continue
            ratio = min(ok) / today[n]["output_bytes"]
            ratios.append(ratio)
            larger += ratio > 1
        at_q = made[v].get(args.quality, {})
        common = [n for n in today if n in at_q]
        mp = sum(today[n]["input_pixels"] for n in common) / 1e6
        speed = (mp / sum(at_q[n]["best_s"] for n in common)) / (mp / sum(today[n]["best_s"] for n in common))
        results[v] = {"median_ratio": statistics.median(ratios), "min": min(ratios), "max": max(ratios),
                      "larger_or_unreached": larger, "speed_ratio": speed}
        print(f"{v:<22} {results[v]['median_ratio']:>22.3f} {min(ratios):>6.3f}–{max(ratios):<7.3f} "
              f"{larger:>7}/{len(today)} {speed:>21.3f}")
    b.write_json(args.json, {"benchmark": "jpeg-variants", "args": vars(args), "variants": results})


if __name__ == "__main__":
    b.run_main(main, sys.argv[1:])
