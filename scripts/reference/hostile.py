#!/usr/bin/python3
"""Hostile inputs that are small files asking for huge allocations (issue: resource limits).

  SluiceMediaTests/Fixtures/hostile/
    png_100000x100000.png    a valid PNG signature and IHDR claiming 100 000 x 100 000 pixels, one
                             tiny IDAT: refused from the header, before any pixel buffer exists
    jpeg_65000x65000.jpg     a baseline JPEG header (SOF0, SOS) claiming 65 000 x 65 000, 16 bytes of scan
    png_bomb_4096.png        a real 4096 x 4096 black PNG (~50 KB, 48 MiB of pixels): a decompression
                             bomb for a decoder whose pixel limit is below 16 Mi pixels
  SluiceModelsTests/Fixtures/hostile/
    expanded_100gb.pth       torch.save of torch.zeros(1).expand(100000, 250000): one stored float,
                             a 25 000 000 000-element (100 GB as float32) tensor once materialised
    legacy_huge_storage.pth  legacy format whose storage size field claims 2^40 elements
    npz_claims_1gb.npz       an .npz whose one deflated entry (a 4x4 float32 array) claims 10^9 bytes
                             uncompressed in the central directory, more than deflate can expand

    /usr/bin/python3 scripts/reference/hostile.py
"""
import json
import os
import struct
import zlib

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MEDIA = os.path.join(ROOT, "Tests", "SluiceMediaTests", "Fixtures", "hostile")
MODELS = os.path.join(ROOT, "Tests", "SluiceModelsTests", "Fixtures", "hostile")


def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png(width, height, raw_rows):
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw_rows, 9))
            + chunk(b"IEND", b""))


def jpeg_header(width, height):
    soi = b"\xff\xd8"
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    dqt = b"\xff\xdb" + struct.pack(">H", 67) + b"\x00" + bytes([1] * 64)
    sof0 = b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, height, width, 3) + b"\x01\x22\x00\x02\x11\x00\x03\x11\x00"
    sos = b"\xff\xda" + struct.pack(">HB", 12, 3) + b"\x01\x00\x02\x11\x03\x11" + b"\x00\x3f\x00"
    return soi + app0 + dqt + sof0 + sos + b"\x00" * 16 + b"\xff\xd9"


def main():
    os.makedirs(MEDIA, exist_ok=True)
    os.makedirs(MODELS, exist_ok=True)
    with open(os.path.join(MEDIA, "png_100000x100000.png"), "wb") as f:
        f.write(png(100000, 100000, b"\x00" * 301))
    with open(os.path.join(MEDIA, "jpeg_65000x65000.jpg"), "wb") as f:
        f.write(jpeg_header(65000, 65000))
    side = 4096
    with open(os.path.join(MEDIA, "png_bomb_4096.png"), "wb") as f:
        f.write(png(side, side, b"\x00" * ((side * 3 + 1) * side)))

    torch.save({"weight": torch.zeros(1).expand(100000, 250000)}, os.path.join(MODELS, "expanded_100gb.pth"))
    # Legacy format: a real small checkpoint whose first storage size field is rewritten to 2^40.
    path = os.path.join(MODELS, "legacy_huge_storage.pth")
    torch.save({"weight": torch.arange(4, dtype=torch.float32)}, path, _use_new_zipfile_serialization=False)
    data = bytearray(open(path, "rb").read())
    count = struct.pack("<q", 4)
    at = data.rfind(count, 0, len(data) - 16)  # the size field right before the 16 data bytes
    assert at == len(data) - 16 - 8, at
    data[at:at + 8] = struct.pack("<q", 1 << 40)
    open(path, "wb").write(bytes(data))

    # An npz whose central directory claims 10^9 uncompressed bytes for a small deflated entry.
    path = os.path.join(MODELS, "npz_claims_1gb.npz")
    np.savez_compressed(path, w=np.zeros((4, 4), np.float32))
    data = bytearray(open(path, "rb").read())
    central = data.rfind(b"PK\x01\x02")
    real = struct.unpack_from("<I", data, central + 24)[0]
    assert real == 16 * 4 + 128, real  # the .npy: header and 64 bytes of floats
    struct.pack_into("<I", data, central + 24, 10 ** 9)
    open(path, "wb").write(bytes(data))

    for folder, files in [(MEDIA, ["png_100000x100000.png", "jpeg_65000x65000.jpg", "png_bomb_4096.png"]),
                          (MODELS, ["expanded_100gb.pth", "legacy_huge_storage.pth", "npz_claims_1gb.npz"])]:
        with open(os.path.join(folder, "manifest.json"), "w") as f:
            json.dump({"generator": "scripts/reference/hostile.py", "seed": None,
                       "versions": {"torch": torch.__version__, "numpy": np.__version__, "zlib": zlib.ZLIB_VERSION},
                       "files": {name: os.path.getsize(os.path.join(folder, name)) for name in files}}, f, indent=1)
            f.write("\n")
    print("wrote", MEDIA, MODELS)


if __name__ == "__main__":
    main()
