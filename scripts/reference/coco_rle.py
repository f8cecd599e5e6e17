#!/usr/bin/env python3
"""Test vectors for SluicePipeline's CocoRLE, from real pycocotools (`pycocotools.mask`, maskApi.c).

Writes Tests/SluicePipelineTests/CocoRLEVectors.swift, a Swift literal file, so the tests need neither Python nor
resources. Three kinds of vector:

  masks      binary masks (the golden ones of ../shared/docs/segmentation.md §5.4, a few named edge cases, and
             random ones from a fixed numpy RandomState: 1×1, 1×N, N×1, odd sizes up to 64×64, all-0, all-1,
             sparse, half, dense, blobby, stripes, checkerboards) with pycocotools' counts, compressed string,
             area and bbox;
  counts     uncompressed count lists (zero-length runs inside, counts in the millions and up to 2^32-1) with
             what pycocotools' `frPyObjects` makes of them;
  class maps small multi-class maps with pycocotools' encoding of each class present (for `encodeAll`).

Every mask's counts are also computed independently here (numpy, column-major) and must re-encode, through
`frPyObjects({'size': [h, w], 'counts': list})`, to pycocotools' own string; pycocotools must decode every string
back to its mask; and each plausible bug listed in BUGS must be caught by at least one named vector.

Setup and run (from the repository root; .work/ is git-ignored):
    python3 -m venv --system-site-packages .work/venv-coco
    .work/venv-coco/bin/pip install pycocotools==2.0.11
    .work/venv-coco/bin/python scripts/reference/coco_rle.py
"""
import os
import sys
from importlib.metadata import version

import numpy as np
import pycocotools.mask as cocomask

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "Tests", "SluicePipelineTests", "CocoRLEVectors.swift")
SEED = 20250611


# ---- independent reference (numpy) and the plausible bugs it must tell apart -------------------------------

def counts_of(mask, order="F"):
    """Alternating run lengths of a 0/1 mask in `order`, starting with a run of 0s."""
    flat = np.asarray(mask, dtype=np.uint8).flatten(order=order)
    if flat.size == 0:
        return [0]
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    edges = [0] + change.tolist() + [flat.size]
    runs = np.diff(edges).tolist()
    return ([0] + runs) if flat[0] == 1 else runs


def string_of(counts, delta_from=3, signed=True):
    """rleToString; `delta_from=2` is the off-by-one bug (i >= 2 instead of i > 2), `signed=False` the bug of
    stopping at x == 0 whatever bit 0x10 says (so negative differences, and values with bit 4 set, go wrong)."""
    out = []
    for i, value in enumerate(counts):
        x = value - (counts[i - 2] if i >= delta_from else 0)
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            if signed:
                more = (x != -1) if (c & 0x10) else (x != 0)
            else:
                more = x not in (0, -1)
            if more:
                c |= 0x20
            out.append(chr(c + 48))
    return "".join(out)


def bbox_of(counts, h, crossing_rule=True):
    """rleToBbox for area > 0; `crossing_rule=False` is the bug of taking only the runs' end rows."""
    xs = ys = 1 << 62
    xe = ye = -1
    start = 0
    for j, c in enumerate(counts):
        if j % 2 == 1 and c > 0:
            end = start + c - 1
            x0, x1 = start // h, end // h
            xs, xe = min(xs, x0), max(xe, x1)
            if crossing_rule and x0 < x1:
                ys, ye = 0, h - 1
            else:
                ys, ye = min(ys, start % h, end % h), max(ye, start % h, end % h)
        start += c
    return [0, 0, 0, 0] if xe < 0 else [xs, ys, xe - xs + 1, ye - ys + 1]


BUGS = {
    "row-major scan": lambda m: string_of(counts_of(m, "C")),
    "delta for i >= 2": lambda m: string_of(counts_of(m), delta_from=2),
    "varint end without the sign bit": lambda m: string_of(counts_of(m), signed=False),
    "bbox without the column-crossing rule": lambda m: bbox_of(counts_of(m), m.shape[0], crossing_rule=False),
}


def true_bbox(m):
    ys, xs = np.nonzero(m)
    if len(xs) == 0:
        return [0, 0, 0, 0]
    return [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]


# ---- masks -------------------------------------------------------------------------------------------------

def named_masks():
    masks = []
    m = np.zeros((4, 5), np.uint8); m[1:3, 1:4] = 1
    masks.append(("golden 4x5", m))
    masks.append(("golden 3x3 ones", np.ones((3, 3), np.uint8)))
    masks.append(("golden 2x2 zeros", np.zeros((2, 2), np.uint8)))
    m = np.zeros((100, 100), np.uint8); m[10:90, 20:30] = 1; m[0:5, 50] = 1
    masks.append(("golden 100x100", m))
    # A run of 1s from (x 0, y 3) to (x 1, y 0): the end rows alone give y 0...3, pycocotools (and the truth) 0...4.
    m = np.zeros((5, 2), np.uint8); m[3:5, 0] = 1; m[0, 1] = 1
    masks.append(("crossing 5x2", m))
    # Pixel (0, 0) set: counts start with a zero-length run of 0s.
    m = np.zeros((3, 4), np.uint8); m[0, 0] = 1; m[2, 3] = 1
    masks.append(("corner pixels 3x4", m))
    # A long run after short ones: a negative difference in the string (the 100x100 golden has them too).
    m = np.zeros((6, 7), np.uint8); m[0, 0] = 1; m[2:4, 1:6] = 1
    masks.append(("negative delta 6x7", m))
    # A run of 44 is written as a backslash then "1" (and JSON escapes the backslash).
    m = np.zeros((50, 1), np.uint8); m[44:, 0] = 1
    masks.append(("backslash 50x1", m))
    masks.append(("1x1 zero", np.zeros((1, 1), np.uint8)))
    masks.append(("1x1 one", np.ones((1, 1), np.uint8)))
    return masks


def random_mask(rng, h, w, kind):
    if kind == "zeros":
        return np.zeros((h, w), np.uint8)
    if kind == "ones":
        return np.ones((h, w), np.uint8)
    if kind in ("sparse", "half", "dense"):
        p = {"sparse": 0.04, "half": 0.5, "dense": 0.96}[kind]
        return (rng.random_sample((h, w)) < p).astype(np.uint8)
    if kind == "blobby":
        m = np.zeros((h, w), np.uint8)
        for _ in range(rng.randint(1, 5)):
            y0, x0 = rng.randint(0, h), rng.randint(0, w)
            y1, x1 = rng.randint(y0, h) + 1, rng.randint(x0, w) + 1
            m[y0:y1, x0:x1] ^= 1
        return m
    if kind == "rows":
        return np.repeat((rng.random_sample((h, 1)) < 0.5).astype(np.uint8), w, axis=1)
    if kind == "cols":
        return np.repeat((rng.random_sample((1, w)) < 0.5).astype(np.uint8), h, axis=0)
    if kind == "checker":
        return ((np.arange(h)[:, None] + np.arange(w)[None, :]) % 2).astype(np.uint8)
    raise ValueError(kind)


def random_masks(rng):
    sizes = [(1, 1), (1, 7), (9, 1), (1, 64), (64, 1), (2, 3), (3, 2), (5, 7), (7, 5), (13, 11), (11, 13),
             (16, 16), (31, 17), (17, 31), (32, 33), (47, 63), (63, 47), (64, 64), (45, 64), (64, 29)]
    extras = ["zeros", "ones", "rows", "cols", "checker"]
    masks = []
    for i, (h, w) in enumerate(sizes):
        # Every size gets sparse/half/dense/blobby and two of the extras in turn; the big ones skip the
        # run-heavy half and checker kinds (file size), except 64x64.
        kinds = ["sparse", "half", "dense", "blobby", extras[i % 5], extras[(i + 2) % 5]]
        for kind in kinds:
            if h * w > 1500 and kind in ("half", "checker") and (h, w) != (64, 64):
                continue
            masks.append((f"random {h}x{w} {kind}", random_mask(rng, h, w, kind)))
    return masks


def encode(m):
    rle = cocomask.encode(np.asfortranarray(m.astype(np.uint8)))
    return rle, rle["counts"].decode("ascii"), int(cocomask.area(rle)), [int(v) for v in cocomask.toBbox(rle)]


def check_mask(name, m):
    h, w = m.shape
    rle, text, area, bbox = encode(m)
    counts = counts_of(m)
    assert sum(counts) == h * w, name
    again = cocomask.frPyObjects({"size": [h, w], "counts": counts}, h, w)
    assert again["counts"].decode("ascii") == text, (name, again, text)
    assert string_of(counts) == text, name
    assert np.array_equal(cocomask.decode(rle), m), name
    assert area == int(m.sum()), name
    assert bbox == true_bbox(m) == bbox_of(counts, h), (name, bbox, true_bbox(m))
    return dict(name=name, h=h, w=w, mask=m, counts=counts, text=text, area=area, bbox=bbox)


# ---- count lists -------------------------------------------------------------------------------------------

def count_vectors():
    cases = [
        ("list all ones 2x2", 2, 2, [0, 4]),
        ("list crossing 2x2", 2, 2, [1, 2, 1]),
        ("list zero-length runs inside", 2, 2, [1, 0, 0, 2, 1]),
        ("list zero-length first and last runs", 3, 3, [0, 9, 0]),
        ("list 512x2048 millions", 512, 2048, [3, 1000000, 5, 2, 512 * 2048 - 1000010]),
        ("list 512x2048 one column", 512, 2048, [512 * 700, 512, 512 * 2048 - 512 * 701]),
        ("list 65535x65535 last pixel", 65535, 65535, [65535 * 65535 - 1, 1]),
        ("list 65535x65535 all but first", 65535, 65535, [1, 65535 * 65535 - 1]),
    ]
    vectors = []
    for name, h, w, counts in cases:
        assert sum(counts) == h * w, name
        rle = cocomask.frPyObjects({"size": [h, w], "counts": counts}, h, w)
        text = rle["counts"].decode("ascii")
        assert string_of(counts) == text, name
        area = int(cocomask.area(rle))
        bbox = [int(v) for v in cocomask.toBbox(rle)]
        assert area == sum(counts[1::2]) and area > 0, name
        assert bbox == bbox_of(counts, h), (name, bbox)
        vectors.append(dict(name=name, h=h, w=w, counts=counts, text=text, area=area, bbox=bbox))
    return vectors


# ---- class maps ----------------------------------------------------------------------------------------------

def class_maps(rng):
    maps = []
    for name, h, w, values in [("classes 7x9 three", 7, 9, [0, 1, 2]),
                               ("classes 17x23 gaps", 17, 23, [0, 3, 7, 15]),
                               ("classes 1x12 row", 1, 12, [2, 5]),
                               ("classes 12x1 column", 12, 1, [4, 9, 11])]:
        cm = np.full((h, w), values[0], np.uint8)
        for v in values[1:]:
            for _ in range(3):
                y0, x0 = rng.randint(0, h), rng.randint(0, w)
                cm[y0:rng.randint(y0, h) + 1, x0:rng.randint(x0, w) + 1] = v
        noise = rng.random_sample((h, w)) < 0.1
        cm[noise] = rng.choice(values, size=int(noise.sum()))
        per_class = []
        for v in sorted(set(cm.flatten().tolist())):
            _, text, area, bbox = encode(cm == v)
            per_class.append((v, text, area, bbox))
        maps.append(dict(name=name, h=h, w=w, classes=cm, per_class=per_class))
    return maps


# ---- Swift output --------------------------------------------------------------------------------------------

def mask_hex(m):
    bits = m.astype(np.uint8).flatten(order="C").tolist()
    bits += [0] * (-len(bits) % 4)
    return "".join("%x" % (bits[i] * 8 + bits[i + 1] * 4 + bits[i + 2] * 2 + bits[i + 3]) for i in range(0, len(bits), 4))


def swift_string(text):
    # Raw strings: the compressed alphabet ('0'...'o') has '\\' and '`' but never '"' or '#'.
    assert '"' not in text and "#" not in text
    return '#"' + text + '"#'


def main():
    rng = np.random.RandomState(SEED)
    masks = [check_mask(n, m) for n, m in named_masks() + random_masks(rng)]
    counts = count_vectors()
    maps = class_maps(rng)

    caught = {}
    for bug, wrong in BUGS.items():
        caught[bug] = [v["name"] for v in masks
                       if not v["name"].startswith("random") and
                       wrong(v["mask"]) != (v["bbox"] if "bbox" in bug else v["text"])]
        assert caught[bug], f"no named vector catches: {bug}"

    lines = [
        "// Generated by scripts/reference/coco_rle.py; do not edit. Regenerate from the repository root with",
        "//   .work/venv-coco/bin/python scripts/reference/coco_rle.py",
        f"// Expected values from pycocotools {version('pycocotools')} (numpy {np.__version__}), "
        f"random masks from numpy RandomState({SEED}).",
        "//",
        "// Named vectors that catch plausible bugs (checked by the generator):",
    ]
    for bug, names in caught.items():
        lines.append(f"//   {bug}: {', '.join(names)}")
    lines += [
        "",
        "/// A binary mask and what pycocotools makes of it.",
        "struct CocoRLEMaskVector {",
        "    let name: String",
        "    let height: Int, width: Int",
        "    /// Row-major pixels, 4 per hex digit, most significant bit first, zero-padded at the end.",
        "    let maskHex: String",
        "    /// The uncompressed counts, space-separated.",
        "    let counts: String",
        "    let compressed: String",
        "    let area: Int",
        "    let bbox: [Int]",
        "}",
        "",
        "/// An uncompressed count list and what pycocotools' `frPyObjects` makes of it.",
        "struct CocoRLECountsVector {",
        "    let name: String",
        "    let height: Int, width: Int",
        "    let counts: [Int]",
        "    let compressed: String",
        "    let area: Int",
        "    let bbox: [Int]",
        "}",
        "",
        "/// A class map (values < 16) and pycocotools' encoding of `map == value` for each value present.",
        "struct CocoRLEClassMapVector {",
        "    struct Class { let value: UInt16; let compressed: String; let area: Int; let bbox: [Int] }",
        "    let name: String",
        "    let height: Int, width: Int",
        "    /// Row-major class indices, one hex digit each.",
        "    let classesHex: String",
        "    let classes: [Class]",
        "}",
        "",
        "enum CocoRLEVectors {",
        "    static let masks: [CocoRLEMaskVector] = [",
    ]
    for v in masks:
        lines.append(f'        CocoRLEMaskVector(name: "{v["name"]}", height: {v["h"]}, width: {v["w"]},')
        lines.append(f'            maskHex: "{mask_hex(v["mask"])}",')
        lines.append(f'            counts: "{" ".join(map(str, v["counts"]))}",')
        lines.append(f'            compressed: {swift_string(v["text"])},')
        lines.append(f'            area: {v["area"]}, bbox: {v["bbox"]}),')
    lines += ["    ]", "", "    static let counts: [CocoRLECountsVector] = ["]
    for v in counts:
        lines.append(f'        CocoRLECountsVector(name: "{v["name"]}", height: {v["h"]}, width: {v["w"]}, '
                     f'counts: {v["counts"]},')
        lines.append(f'            compressed: {swift_string(v["text"])}, area: {v["area"]}, bbox: {v["bbox"]}),')
    lines += ["    ]", "", "    static let classMaps: [CocoRLEClassMapVector] = ["]
    for v in maps:
        hexes = "".join("%x" % c for c in v["classes"].flatten(order="C").tolist())
        lines.append(f'        CocoRLEClassMapVector(name: "{v["name"]}", height: {v["h"]}, width: {v["w"]},')
        lines.append(f'            classesHex: "{hexes}",')
        lines.append("            classes: [")
        for value, text, area, bbox in v["per_class"]:
            lines.append(f"                .init(value: {value}, compressed: {swift_string(text)}, "
                         f"area: {area}, bbox: {bbox}),")
        lines.append("            ]),")
    lines += ["    ]", "}", ""]

    with open(OUT, "w") as f:
        f.write("\n".join(lines))
    print(f"wrote {OUT}: {len(masks)} masks, {len(counts)} count lists, {len(maps)} class maps, "
          f"{os.path.getsize(OUT)} bytes")
    for bug, names in caught.items():
        print(f"  {bug}: caught by {', '.join(names)}")


if __name__ == "__main__":
    sys.exit(main())
