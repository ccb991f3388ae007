#!/usr/bin/env python3
"""distilld's image path vs libvips, in-process on both sides, one core each.

For every image (default: the corpus's JPEGs), both produce a JPEG whose long edge is at
most --max-edge at JPEG quality --quality: distilld through its own pipeline
(examples/distill_bench.rs: decode, orient, resize with fast_image_resize, jpeg-encoder),
libvips through pyvips `thumbnail_buffer` (shrink-on-load, autorotate, an embedded profile
converted to sRGB) and `jpegsave` (optimized Huffman tables, progressive, metadata
stripped), with VIPS_CONCURRENCY=1.
Both are pinned to core 1 and take turns, round by round (A B A B); each image's best
time per side is kept. Startup costs are outside the timed region on both sides.

Printed per image and in total: input megapixels per second per core, output bytes, and
SSIM (luma, 11x11 Gaussian) of each output against the original resized with Lanczos3
to that output's size, in the colours a colour-managed browser shows: an embedded profile
applied with its perceptual (AToB0) table, as Firefox's and Chrome's engines do (Little
CMS's relative intent falls back to no conversion for profiles that carry only that
table), and a CMYK JPEG without a profile by the plain formula R = (1-C)(1-K) browsers
use. `--cmyk-reference press` takes libvips's own fallback press profile instead.
"""

import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile

import benchlib as b

CORE = b.SERVER_CORE


def distilld_round(files, max_edge, quality, iters, out_dir):
    cmd = ["taskset", "-c", CORE, os.path.join(b.ROOT, "target", "release", "examples", "distill_bench"),
           "--max-edge", str(max_edge), "--quality", str(quality), "--iters", str(iters), "--out", out_dir, *files]
    lines = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.splitlines()
    return {r["file"]: r for r in map(json.loads, lines)}


VIPS_WORKER = r"""
import json, os, sys, time
import pyvips
pyvips.cache_set_max(0)
max_edge, quality, iters, out_dir = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
for path in sys.argv[5:]:
    data = open(path, "rb").read()
    name = os.path.basename(path)
    # An embedded profile is applied (as distilld does), not stripped with the pixels
    # left in its space; images without one are left as they are on both sides.
    tagged = pyvips.Image.new_from_buffer(data, "").get_typeof("icc-profile-data") != 0
    convert = {"export_profile": "srgb", "intent": "perceptual"} if tagged else {}
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        img = pyvips.Image.thumbnail_buffer(data, max_edge, height=max_edge, size="down", **convert)
        if img.hasalpha():
            img = img.flatten(background=255)
        out = img.jpegsave_buffer(Q=quality, optimize_coding=True, interlace=True, strip=True)
        times.append(time.perf_counter() - t)
    times.sort()
    open(os.path.join(out_dir, name + ".vips.jpg"), "wb").write(out)
    print(json.dumps({"file": name, "best_s": times[0], "median_s": times[len(times) // 2],
                      "output_bytes": len(out), "width": img.width, "height": img.height}))
"""


def vips_round(files, max_edge, quality, iters, out_dir):
    env = {**os.environ, "VIPS_CONCURRENCY": "1"}
    cmd = ["taskset", "-c", CORE, sys.executable, "-c", VIPS_WORKER, str(max_edge), str(quality), str(iters),
           out_dir, *files]
    lines = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env).stdout.splitlines()
    return {r["file"]: r for r in map(json.loads, lines)}


def luma(pyvips, image, cmyk_reference="browser"):
    if image.hasalpha():
        image = image.flatten(background=255)
    if image.interpretation == "cmyk":
        if image.get_typeof("icc-profile-data"):
            image = image.icc_transform("srgb", embedded=True, intent="perceptual")
        elif cmyk_reference == "press":
            image = image.colourspace("srgb")
        else:
            # libvips loads ink amounts (0 = none); browsers show (1-C)(1-K) per channel.
            ink = image.cast("double") / 255
            image = ((1 - ink[0:3]) * (1 - ink[3]) * 255).copy(interpretation="srgb")
    return image.colourspace("b-w")[0].cast("double")


def ssim(np, a, b_):
    """Mean SSIM of two equal-sized 2-D float arrays (Wang et al. 2004, 11x11 Gaussian)."""
    x = np.arange(11) - 5
    g = np.exp(-(x ** 2) / (2 * 1.5 ** 2))
    g /= g.sum()

    def blur(m):
        m = np.apply_along_axis(lambda r: np.convolve(r, g, mode="valid"), 1, m)
        return np.apply_along_axis(lambda c: np.convolve(c, g, mode="valid"), 0, m)

    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu_a, mu_b = blur(a), blur(b_)
    saa = blur(a * a) - mu_a ** 2
    sbb = blur(b_ * b_) - mu_b ** 2
    sab = blur(a * b_) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * sab + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (saa + sbb + c2))
    return float(s.mean())


def quality_of(original_path, output_path, cmyk_reference="browser"):
    import numpy as np
    import pyvips
    out = pyvips.Image.new_from_file(output_path)
    ref = pyvips.Image.new_from_file(original_path).autorot()
    if ref.get_typeof("icc-profile-data") and ref.interpretation != "cmyk":
        ref = ref.icc_transform("srgb", intent="perceptual")
    ref = ref.resize(out.width / ref.width, vscale=out.height / ref.height, kernel="lanczos3")
    to_np = lambda im: np.ndarray(buffer=im.write_to_memory(), dtype=np.float64,
                                  shape=[im.height, im.width])
    a, c = to_np(luma(pyvips, out)), to_np(luma(pyvips, ref, cmyk_reference))
    h, w = min(a.shape[0], c.shape[0]), min(a.shape[1], c.shape[1])
    return ssim(np, a[:h, :w], c[:h, :w])


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--iters", type=int, default=3, help="runs per image per round")
    ap.add_argument("--max-edge", type=int, default=1024)
    ap.add_argument("--quality", type=int, default=65)
    ap.add_argument("--files", default="*.jpg", help="glob under the corpus")
    ap.add_argument("--cmyk-reference", choices=["browser", "press"], default="browser",
                    help="how the reference shows a CMYK JPEG without a profile")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    b.ensure_packages({"vips": "libvips-tools"})
    subprocess.run(["cargo", "build", "--release", "--quiet", "--example", "distill_bench"], cwd=b.ROOT, check=True)
    try:
        import numpy  # noqa: F401
        import pyvips  # noqa: F401
    except ImportError:
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--break-system-packages",
                        "pyvips", "numpy"], check=True)
    files = sorted(glob.glob(os.path.join(b.CORPUS, args.files)))
    out_dir = tempfile.mkdtemp(prefix="distill-vs-vips-")
    best = {"distilld": {}, "vips": {}}
    for i in range(args.rounds):
        for side, run in (("distilld", distilld_round), ("vips", vips_round)):
            for name, r in run(files, args.max_edge, args.quality, args.iters, out_dir).items():
                if "error" in r:
                    print(f"  {side} {name}: {r['error']}", file=sys.stderr)
                    continue
                if name not in best[side] or r["best_s"] < best[side][name]["best_s"]:
                    best[side][name] = r
        print(f"  round {i + 1} done", file=sys.stderr)
    rows = []
    print(f"{'image':40} {'MP':>6} {'MP/s d':>8} {'MP/s v':>8} {'ratio':>6} {'bytes d':>8} {'bytes v':>8} "
          f"{'b ratio':>7} {'SSIM d':>7} {'SSIM v':>7}")
    for path in files:
        name = os.path.basename(path)
        d, v = best["distilld"].get(name), best["vips"].get(name)
        if not d or not v:
            continue
        mp = d["input_pixels"] / 1e6
        ext = "png" if d["type"] == "image/png" else "jpg"
        sd = quality_of(path, os.path.join(out_dir, f"{name}.distilld.{ext}"), args.cmyk_reference)
        sv = quality_of(path, os.path.join(out_dir, f"{name}.vips.jpg"), args.cmyk_reference)
        row = {"file": name, "mp": mp, "d_s": d["best_s"], "v_s": v["best_s"], "d_bytes": d["output_bytes"],
               "v_bytes": v["output_bytes"], "d_ssim": sd, "v_ssim": sv, "d_size": [d["width"], d["height"]],
               "v_size": [v["width"], v["height"]]}
        rows.append(row)
        print(f"{name:40} {mp:6.2f} {mp / d['best_s']:8.1f} {mp / v['best_s']:8.1f} {v['best_s'] / d['best_s']:6.2f} "
              f"{d['output_bytes']:8} {v['output_bytes']:8} {d['output_bytes'] / v['output_bytes']:7.3f} "
              f"{sd:7.4f} {sv:7.4f}")
    mp = sum(r["mp"] for r in rows)
    td, tv = sum(r["d_s"] for r in rows), sum(r["v_s"] for r in rows)
    bd, bv = sum(r["d_bytes"] for r in rows), sum(r["v_bytes"] for r in rows)
    msd = sum(r["d_ssim"] for r in rows) / len(rows)
    msv = sum(r["v_ssim"] for r in rows) / len(rows)
    print(f"\ntotal {len(rows)} images, {mp:.1f} MP: distilld {mp / td:.1f} MP/s, libvips {mp / tv:.1f} MP/s "
          f"per core -> throughput ratio {tv / td:.3f}")
    print(f"output bytes: distilld {bd}, libvips {bv} -> ratio {bd / bv:.3f}")
    print(f"mean SSIM: distilld {msd:.4f}, libvips {msv:.4f} (difference {msd - msv:+.4f})")
    b.write_json(args.json, {"benchmark": "distill-vs-vips", "args": vars(args), "rows": rows})


if __name__ == "__main__":
    main(sys.argv[1:])
