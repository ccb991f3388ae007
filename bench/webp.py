#!/usr/bin/env python3
"""WebP for clients that accept it: bytes at equal perceived quality against today's
JPEG/PNG output, the share of the corpus made >= 10% smaller, animated GIFs, and
throughput against libvips webpsave, in one run.

Quality is SSIMULACRA2 (bench/quality: the `ssimulacra2` crate, BSD-2), each output
scored against the unencoded pixels it was made from (distill_bench --reference: decoded,
upright, fitted to --max-edge, sRGB), so both formats are judged on the same reference;
an image with transparency is composited over mid-gray for scoring.

- Today's output: distill_bench at the profile's quality (medium: long edge 1024, Q 65).
- WebP: distill_bench --webp at each of --webp-qualities. "Bytes at equal score" takes,
  per image, the smallest WebP whose score is at least today's output's; an image for
  which no WebP quality reaches that score counts as WebP-worse (its ratio taken at the
  highest quality tried).
- Share >= 10% smaller: WebP at the profile's WebP quality against the source file's bytes
  (what a WebP client of `medium` gets; less than 10% smaller means the original is sent).
- Animated GIFs: WebP at the profile's WebP quality against the GIF; frames and timing are
  checked by the unit tests (src/distill/image/tests.rs).
- libvips (pyvips thumbnail_buffer + webpsave_buffer at its defaults, Q 75, VIPS_CONCURRENCY=1)
  against distilld's WebP at the quality whose score matches libvips's: bytes; and input
  megapixels per second on one pinned core (distilld at the profile's WebP quality), the
  two taking turns (A B A B), best of --iters per image.
"""

import argparse
import glob
import json
import os
import statistics
import subprocess
import sys
import tempfile

import benchlib as b

CORE = b.SERVER_CORE
QUALITY_TOOL = os.path.join(b.ROOT, "bench", "quality")

VIPS_WEBP = r"""
import json, os, sys, time
import pyvips
pyvips.cache_set_max(0)
max_edge, iters, out_dir = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
for path in sys.argv[4:]:
    data = open(path, "rb").read()
    name = os.path.basename(path)
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        img = pyvips.Image.thumbnail_buffer(data, max_edge, height=max_edge, size="down")
        out = img.webpsave_buffer()
        times.append(time.perf_counter() - t)
    open(os.path.join(out_dir, name + ".vips.webp"), "wb").write(out)
    # Its own reference (a thumbnail is read once): outside the timed part.
    ref = pyvips.Image.thumbnail_buffer(data, max_edge, height=max_edge, size="down")
    ref.pngsave(os.path.join(out_dir, name + ".vips.ref.png"), compression=1)
    print(json.dumps({"file": name, "best_s": min(times), "output_bytes": len(out)}))
"""


def distill_bench(files, args, quality, out_dir, webp, reference=False, iters=1):
    argv = ["taskset", "-c", CORE, os.path.join(b.ROOT, "target", "release", "examples", "distill_bench"),
            "--max-edge", str(args.max_edge), "--quality", str(quality), "--iters", str(iters),
            "--out", out_dir]
    if webp:
        argv.append("--webp")
        if getattr(args, "sharp_yuv", False):
            argv.append("--webp-sharp-yuv")
    if reference:
        argv += ["--reference", out_dir]
    lines = subprocess.run(argv + files, capture_output=True, text=True, check=True).stdout.splitlines()
    return {r["file"]: r for r in map(json.loads, lines) if "error" not in r}


def vips_round(files, args, out_dir):
    env = {**os.environ, "VIPS_CONCURRENCY": "1"}
    argv = ["taskset", "-c", CORE, sys.executable, "-c", VIPS_WEBP, str(args.max_edge), str(args.iters), out_dir,
            *files]
    lines = subprocess.run(argv, capture_output=True, text=True, check=True, env=env).stdout.splitlines()
    return {r["file"]: r for r in map(json.loads, lines)}


def decoded_as_browsers_do(path):
    """JPEGs are decoded by libvips (libjpeg-turbo, as browsers) into a PNG for the
    scorer: the `image` crate's JPEG decoder misreads jpeg-encoder's output (scores
    below -700 where libjpeg-turbo's decode of the same file scores 81)."""
    if not path.endswith(".jpg"):
        return path
    png = path + ".png"
    if not os.path.exists(png):
        subprocess.run(["vips", "copy", path, png], check=True, capture_output=True)
    return png


def scores(pairs):
    """SSIMULACRA2 of each (reference, distorted), keyed by the distorted file's path; a
    pair that cannot be scored raises."""
    tool = os.path.join(QUALITY_TOOL, "target", "release", "distill-quality")
    scored = {decoded_as_browsers_do(d): d for _, d in pairs}
    out = subprocess.run([tool, *[p for r, d in pairs for p in (r, decoded_as_browsers_do(d))]],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    got = {}
    for line in out:
        path, value = line.split("\t", 1)
        if value.startswith("error"):
            raise b.BadRun(f"cannot score {path}: {value}")
        got[scored[path]] = float(value)
    return got


def moved(out_dir, name, tag):
    """distill_bench writes NAME.distilld.EXT; keep each run's output under its tag."""
    for ext in ("jpg", "png", "webp"):
        src = os.path.join(out_dir, f"{name}.distilld.{ext}")
        if os.path.exists(src):
            dst = os.path.join(out_dir, f"{name}.{tag}.{ext}")
            os.replace(src, dst)
            return dst
    raise b.BadRun(f"no output for {name} ({tag})")


def animated(path):
    with open(path, "rb") as f:
        return path.endswith(".gif") and b.gif_frames(f.read()) > 1


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--max-edge", type=int, default=1024)
    ap.add_argument("--quality", type=int, default=65, help="the profile's quality (medium: 65)")
    ap.add_argument("--webp-quality", type=int, default=75,
                    help="the profile's WebP quality (medium: 75), one of --webp-qualities")
    ap.add_argument("--webp-qualities", default="30,40,50,60,65,70,75,80,85,90,95")
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--no-vips", action="store_true", help="skip the libvips comparison")
    ap.add_argument("--sharp-yuv", action="store_true",
                    help="WebP with libwebp's sharp RGB->YUV conversion (a profile's webp_sharp_yuv)")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    b.ensure_packages({"vips": "libvips-tools"})
    subprocess.run(["cargo", "build", "--release", "--quiet", "--example", "distill_bench"], cwd=b.ROOT, check=True)
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=QUALITY_TOOL, check=True)
    try:
        import pyvips  # noqa: F401
    except ImportError:
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--break-system-packages", "pyvips"],
                       check=True)
    every = sorted(p for p in glob.glob(os.path.join(b.CORPUS, "*")) if p.lower().endswith((".jpg", ".png", ".gif")))
    stills = [p for p in every if not animated(p)]
    anims = [p for p in every if animated(p)]
    out = tempfile.mkdtemp(prefix="webp-bench-")
    names = [os.path.basename(p) for p in stills]

    # Today's output and the references.
    today = distill_bench(stills, args, args.quality, out, webp=False, reference=True)
    today_path = {n: moved(out, n, "today") for n in today}
    webp = {}
    for q in map(int, args.webp_qualities.split(",")):
        made = distill_bench(stills, args, q, out, webp=True)
        webp[q] = {n: dict(r, path=moved(out, n, f"webp{q}")) for n, r in made.items()}
    ref = {n: os.path.join(out, f"{n}.ref.png") for n in names}
    pairs = [(ref[n], today_path[n]) for n in today] + [
        (ref[n], r["path"]) for q in webp for n, r in webp[q].items()]
    score = scores(pairs)

    rows, worse = [], 0
    for n in today:
        target = score[today_path[n]]
        tried = sorted(((q, webp[q][n]) for q in webp if n in webp[q]), key=lambda x: x[0])
        ok = [(r["output_bytes"], q) for q, r in tried if score[r["path"]] >= target]
        if ok:
            wb, wq = min(ok)
        else:
            worse += 1
            wq, r = tried[-1]
            wb = r["output_bytes"]
        rows.append({"file": n, "today_bytes": today[n]["output_bytes"], "today_type": today[n]["type"],
                     "today_score": target, "webp_bytes": wb, "webp_quality": wq,
                     "ratio": wb / today[n]["output_bytes"], "reached": bool(ok)})
    ratios = [r["ratio"] for r in rows]
    print(f"\n== WebP vs today's output at equal SSIMULACRA2 ({len(rows)} stills, long edge {args.max_edge}, "
          f"today at Q {args.quality}) ==")
    for r in rows:
        print(f"  {r['file']:<44} today {r['today_bytes']:>8} ({r['today_type']}, {r['today_score']:.1f})  "
              f"webp {r['webp_bytes']:>8} (q{r['webp_quality']})  {r['ratio']:.3f}"
              f"{'' if r['reached'] else '  NOT REACHED'}")
    print(f"median bytes ratio webp/today {statistics.median(ratios):.3f} "
          f"(min {min(ratios):.3f}, max {max(ratios):.3f}); WebP larger at equal score on "
          f"{sum(1 for x in ratios if x > 1)} of {len(ratios)}, score not reached on {worse}")
    medians = {q: statistics.median(score[r["path"]] for r in webp[q].values()) for q in webp}
    print("median SSIMULACRA2 by WebP quality: " + ", ".join(f"q{q} {m:.1f}" for q, m in medians.items()))
    print(f"median SSIMULACRA2 of today's output at Q {args.quality}: "
          f"{statistics.median(score[p] for p in today_path.values()):.1f}")

    # What a WebP client of the profile gets: >= 10% smaller than the source, or the original.
    at_profile = webp.get(args.webp_quality, {})
    sizes = {os.path.basename(p): os.path.getsize(p) for p in every}
    smaller = [n for n, r in at_profile.items() if r["output_bytes"] <= 0.9 * sizes[n]]
    anim = distill_bench(anims, args, args.webp_quality, out, webp=True)
    anim_cut = {n: 1 - r["output_bytes"] / sizes[n] for n, r in anim.items()}
    smaller_anims = [n for n, cut in anim_cut.items() if cut >= 0.1]
    total = len(stills) + len(anims)
    print(f"\nshare of the corpus >= 10% smaller for a WebP client at WebP quality {args.webp_quality}: "
          f"{len(smaller) + len(smaller_anims)} of {total} ({(len(smaller) + len(smaller_anims)) / total:.1%})")
    if anim_cut:
        print("animated GIFs: " + ", ".join(f"{n} {c:+.1%}" for n, c in anim_cut.items())
              + f"; median reduction {statistics.median(anim_cut.values()):.1%}")

    if args.no_vips:
        b.write_json(args.json, {"benchmark": "webp", "args": vars(args), "stills": rows,
                                 "median_ratio": statistics.median(ratios), "animated": anim_cut})
        return
    # libvips webpsave at its defaults, side by side.
    jpegs = [p for p in stills if p.lower().endswith(".jpg")]
    best = {"distilld": {}, "vips": {}}
    for _ in range(args.rounds):
        for n, r in distill_bench(jpegs, args, args.webp_quality, out, webp=True, iters=args.iters).items():
            best["distilld"][n] = min(best["distilld"].get(n, 1e9), r["best_s"])
        for n, r in vips_round(jpegs, args, out).items():
            best["vips"][n] = min(best["vips"].get(n, 1e9), r["best_s"])
            best.setdefault("vips_bytes", {})[n] = r["output_bytes"]
    pixels = {n: r["input_pixels"] for n, r in today.items()}
    common = [n for n in best["vips"] if n in best["distilld"]]
    mp = sum(pixels[n] for n in common) / 1e6
    td, tv = sum(best["distilld"][n] for n in common), sum(best["vips"][n] for n in common)
    vscore = scores([(os.path.join(out, f"{n}.vips.ref.png"), os.path.join(out, f"{n}.vips.webp")) for n in common])
    vs_rows = []
    for n in common:
        target = vscore[os.path.join(out, f"{n}.vips.webp")]
        ok = [webp[q][n]["output_bytes"] for q in webp if n in webp[q] and score[webp[q][n]["path"]] >= target]
        if ok:
            vs_rows.append(min(ok) / best["vips_bytes"][n])
    print(f"\n== distilld WebP vs libvips webpsave ({len(common)} JPEGs, {mp:.1f} MP, one core each) ==")
    print(f"throughput: distilld {mp / td:.1f} MP/s, libvips {mp / tv:.1f} MP/s -> ratio {tv / td:.3f}")
    if vs_rows:
        print(f"bytes at libvips's score: median ratio distilld/libvips {statistics.median(vs_rows):.3f} "
              f"over {len(vs_rows)} images (min {min(vs_rows):.3f}, max {max(vs_rows):.3f})")
    b.write_json(args.json, {"benchmark": "webp", "args": vars(args), "stills": rows,
                             "median_ratio": statistics.median(ratios), "animated": anim_cut,
                             "vips_throughput_ratio": tv / td, "vips_bytes_ratios": vs_rows})


if __name__ == "__main__":
    b.run_main(main, sys.argv[1:])
