#!/usr/bin/env python3
"""Makes the CMYK test fixtures (run once by hand; the outputs are committed).

- cmyk_profile.icc: a small CMYK -> Lab (ICC v2, lut16, 9-point grid) printer profile,
  sampled through Little CMS from libvips's built-in CMYK profile ("Chemical proof" by
  Graeme W. Gill, released into the public domain), so the fixture stays ~40 KB.
- flower_cmyk_icc.jpg: the corpus's flower.jpg (Pillow, MIT-CMU) at 160x120, converted to CMYK
  through libvips's CMYK profile and saved as an Adobe (inverted) CMYK JPEG with it embedded.
- flower_cmyk_icc.ref.png: the same JPEG converted back to sRGB by libvips (Little CMS,
  perceptual intent): the colours a colour-managed viewer shows.

Needs pyvips (pip) over Debian's libvips42.
"""
import os
import struct

import pyvips

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "..", "..", "..", "shared", "corpus")
GRID = 9


def lab_samples():
    """Lab (D50) of every grid point, in ICC CLUT order (first input varies slowest)."""
    steps = [round(i * 255 / (GRID - 1)) for i in range(GRID)]
    points = [(c, m, y, k) for c in steps for m in steps for y in steps for k in steps]
    raw = bytes(v for p in points for v in p)
    img = pyvips.Image.new_from_memory(raw, len(points), 1, 4, "uchar").copy(interpretation="cmyk")
    lab = img.icc_import(input_profile="cmyk", intent="perceptual", pcs="lab")
    mem = lab.cast("float").write_to_memory()
    vals = struct.unpack(f"<{len(points) * 3}f", mem)
    return [vals[i:i + 3] for i in range(0, len(vals), 3)]


def lab16(lab):
    """ICC v2 16-bit Lab encoding (L 0..100 -> 0..0xFF00, a/b -128..127.996 -> 0..0xFFFF)."""
    l, a, b = lab
    enc = (l * 65280 / 100, (a + 128) * 256, (b + 128) * 256)
    return [max(0, min(65535, round(v))) for v in enc]


def tag_text(text):
    return b"text\0\0\0\0" + text.encode() + b"\0"


def tag_desc(text):
    t = text.encode() + b"\0"
    return b"desc\0\0\0\0" + struct.pack(">I", len(t)) + t + b"\0" * 12 + b"\0" * 67


def tag_xyz(x, y, z):
    f = lambda v: struct.pack(">i", round(v * 65536))
    return b"XYZ \0\0\0\0" + f(x) + f(y) + f(z)


def tag_mft2(samples):
    head = b"mft2\0\0\0\0" + bytes([4, 3, GRID, 0])
    identity = [1, 0, 0, 0, 1, 0, 0, 0, 1]
    head += b"".join(struct.pack(">i", v * 65536) for v in identity)
    head += struct.pack(">HH", 2, 2)
    linear = struct.pack(">HH", 0, 65535)
    clut = b"".join(struct.pack(">HHH", *lab16(s)) for s in samples)
    return head + linear * 4 + clut + linear * 3


def pad4(b):
    return b + b"\0" * (-len(b) % 4)


def profile():
    tags = [
        (b"desc", tag_desc("distilld test CMYK (from Chemical proof)")),
        (b"cprt", tag_text("Public domain (derived from Chemical proof by Graeme W. Gill)")),
        (b"wtpt", tag_xyz(0.9642, 1.0, 0.8249)),
        (b"A2B0", tag_mft2(lab_samples())),
    ]
    offset = 128 + 4 + 12 * len(tags)
    table, body = b"", b""
    for sig, data in tags:
        table += sig + struct.pack(">II", offset + len(body), len(data))
        body += pad4(data)
    size = offset + len(body)
    header = struct.pack(">I", size)  + b"\0" * 4 + bytes([2, 0x10, 0, 0]) + b"prtr" + b"CMYK" + b"Lab "
    header += b"\0" * 12 + b"acsp" + b"\0" * 4 + b"\0" * 4 + b"\0" * 8 + b"\0" * 8 + struct.pack(">I", 0)
    header += tag_xyz(0.9642, 1.0, 0.8249)[8:] + b"\0" * 4
    header += b"\0" * (128 - len(header))
    return header + struct.pack(">I", len(tags)) + table + body


def main():
    icc = profile()
    icc_path = os.path.join(HERE, "cmyk_profile.icc")
    open(icc_path, "wb").write(icc)
    src = pyvips.Image.thumbnail(os.path.join(CORPUS, "flower.jpg"), 160)
    # Separated through the full profile (ours has no Lab -> CMYK table), then tagged
    # with ours, which describes the same press closely.
    cmyk = src.icc_export(output_profile="cmyk", intent="perceptual").copy()
    cmyk.set_type(pyvips.GValue.blob_type, "icc-profile-data", icc)
    jpg = os.path.join(HERE, "flower_cmyk_icc.jpg")
    cmyk.jpegsave(jpg, Q=92)
    back = pyvips.Image.new_from_file(jpg).icc_transform("srgb", intent="perceptual", embedded=True)
    back.pngsave(os.path.join(HERE, "flower_cmyk_icc.ref.png"))
    print(len(icc), os.path.getsize(jpg))


if __name__ == "__main__":
    main()
