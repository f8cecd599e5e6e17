#!/usr/bin/python3
"""Reference fixtures for SluiceMedia (image decode, EXIF orientation, resize, preprocessing).

Takes real photos from /work/shared/media/images, builds the edge cases from crops of them (grayscale,
CMYK/YCCK, progressive and 4:2:0/4:2:2/4:4:4 JPEGs, every EXIF orientation in both byte orders, palette /
gray+alpha / 16-bit / interlaced PNGs) and the bad inputs, and writes the inputs plus what Pillow makes of
them into Tests/SluiceMediaTests/Fixtures/, described by `manifest.json`. The Swift tests only read these
files, so they never need Python.

Every expected image is an 8-bit RGB PNG (lossless, small); `expected_raw.npy` holds one of them as raw
uint8 so the tests can first check that reading those PNGs is exact.

What "expected" means:
  decode   ImageOps.exif_transpose(Image.open(p)).convert("RGB")       (Pillow 9.4, libjpeg-turbo 2.1.5)
  resize   Image.resize((w, h), BICUBIC | BILINEAR) of an RGB image     (no reducing_gap: Pillow's default)
  pipeline torchvision Resize(256) + CenterCrop(224) on the PIL image. torchvision is not installed here,
           so its two PIL code paths are re-implemented below, line for line (torchvision 0.14,
           transforms/functional.py: _compute_resized_output_size and center_crop).
  tensor   (pixel - mean[c]) / std[c] in float32 (pixels 0...255), and for comparison torchvision's own
           ToTensor + Normalize chain ((pixel / 255 - mean) / std, computed with torch).

Run with the system interpreter that has Pillow:  /usr/bin/python3 scripts/reference/images.py
"""
import ctypes
import io
import json
import os
import shutil
import struct
import sys
import zlib

import warnings

import numpy as np
import torch
import PIL
from PIL import Image, ImageOps

# Pillow warns that a palette image with a tRNS byte string "should be converted to RGBA"; that file is
# exactly the case under test.
warnings.filterwarnings("ignore", message="Palette images with Transparency")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "Tests", "SluiceMediaTests", "Fixtures")
MEDIA = "/work/shared/media/images"

manifest = {"decode": [], "resize": [], "pipeline": [], "bad": [], "tensor": []}
OWN_FOLDERS = ["decode", "exif", "resize", "pipeline", "bad", "tensor"]
OWN_FILES = ["manifest.json", "expected_raw.npy"]


def path(rel):
    full = os.path.join(OUT, rel)
    os.makedirs(os.path.dirname(full), exist_ok=True)
    return full


def write_bytes(rel, data):
    with open(path(rel), "wb") as f:
        f.write(data)


def save_expected(rel, image):
    """Expected outputs: plain 8-bit RGB PNG, no gamma or other ancillary chunks."""
    assert image.mode == "RGB", image.mode
    image.save(path(rel), "PNG", optimize=True)


def pillow_decode(rel):
    with Image.open(path(rel)) as im:
        return ImageOps.exif_transpose(im).convert("RGB")


def add_decode(name, rel, tolerance=0, reference="pillow", note="", expected_image=None):
    """Registers a decode case; the expected image is Pillow's unless given."""
    image = expected_image if expected_image is not None else pillow_decode(rel)
    expected = os.path.splitext(rel)[0] + ".expected.png"
    save_expected(expected, image)
    manifest["decode"].append({
        "name": name, "input": rel, "expected": expected, "width": image.width, "height": image.height,
        "tolerance": tolerance, "reference": reference, "note": note,
    })


# ---------------------------------------------------------------------------------------------------
# A tiny PNG writer for what Pillow cannot write (16-bit colour, Adam7 interlace, gAMA, tRNS on RGB).

def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bytes(array, color_type, bit_depth, extra_chunks=(), interlaced=False, width=None):
    """array: samples (or, below 8 bits, already packed rows, with `width` in pixels)."""
    height = array.shape[0]
    width = width or array.shape[1]
    dtype = ">u2" if bit_depth == 16 else "u1"
    samples = array.astype(dtype)

    def rows(sub):
        return b"".join(b"\0" + sub[y].tobytes() for y in range(sub.shape[0]))

    if interlaced:
        passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
        raw = b""
        for x0, y0, dx, dy in passes:
            sub = samples[y0::dy, x0::dx]
            if sub.shape[0] and sub.shape[1]:
                raw += rows(sub)
    else:
        raw = rows(samples)
    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 1 if interlaced else 0)
    body = png_chunk(b"IHDR", header)
    for kind, data in extra_chunks:
        body += png_chunk(kind, data)
    body += png_chunk(b"IDAT", zlib.compress(raw, 9)) + png_chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


# ---------------------------------------------------------------------------------------------------
# EXIF (TIFF) blocks in either byte order, with a few tags around Orientation so the reader has to walk
# the IFD and skip values stored out of line.

def exif_block(orientation, big_endian):
    e = ">" if big_endian else "<"
    make = b"Sluice test\0"
    entries = [
        (0x010F, 2, len(make), None),            # Make, ASCII, stored out of line
        (0x0112, 3, 1, orientation),              # Orientation, SHORT, inline
        (0x011A, 5, 1, None),                     # XResolution, RATIONAL, out of line
    ]
    ifd_offset = 8
    ifd_size = 2 + 12 * len(entries) + 4
    data_offset = ifd_offset + ifd_size
    out_of_line = b""
    ifd = struct.pack(e + "H", len(entries))
    for tag, kind, count, value in entries:
        if tag == 0x0112:
            ifd += struct.pack(e + "HHI", tag, kind, count) + struct.pack(e + "HH", value, 0)
        elif tag == 0x010F:
            ifd += struct.pack(e + "HHII", tag, kind, count, data_offset + len(out_of_line))
            out_of_line += make
        else:
            ifd += struct.pack(e + "HHII", tag, kind, count, data_offset + len(out_of_line))
            out_of_line += struct.pack(e + "II", 72, 1)
    ifd += struct.pack(e + "I", 0)
    head = (b"MM" if big_endian else b"II") + struct.pack(e + "HI", 42, ifd_offset)
    return b"Exif\0\0" + head + ifd + out_of_line


def insert_jpeg_segment(jpeg, marker, payload):
    """Inserts an APPn segment right after SOI (and after JFIF APP0 when present)."""
    assert jpeg[:2] == b"\xff\xd8"
    position = 2
    if jpeg[2:4] == b"\xff\xe0":
        position = 4 + struct.unpack(">H", jpeg[4:6])[0]
    segment = bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload
    return jpeg[:position] + segment + jpeg[position:]


def jpeg_bytes(image, **options):
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", **options)
    return buffer.getvalue()


def ycck_jpeg_bytes(cmyk_array, quality=90):
    """libjpeg-turbo's TurboJPEG API compresses packed CMYK as YCCK (Adobe transform 2); Pillow can't."""
    tj = ctypes.CDLL("libturbojpeg.so.0")
    tj.tjInitCompress.restype = ctypes.c_void_p
    tj.tjCompress2.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                               ctypes.c_int, ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_ulong),
                               ctypes.c_int, ctypes.c_int, ctypes.c_int]
    tj.tjFree.argtypes = [ctypes.c_void_p]
    tj.tjDestroy.argtypes = [ctypes.c_void_p]
    handle = tj.tjInitCompress()
    height, width = cmyk_array.shape[:2]
    out = ctypes.c_void_p()
    size = ctypes.c_ulong(0)
    TJPF_CMYK, TJSAMP_420 = 11, 2
    status = tj.tjCompress2(handle, np.ascontiguousarray(cmyk_array, dtype=np.uint8).tobytes(), width, 0,
                            height, TJPF_CMYK, ctypes.byref(out), ctypes.byref(size), TJSAMP_420, quality, 0)
    assert status == 0, "tjCompress2 failed"
    data = ctypes.string_at(out, size.value)
    tj.tjFree(out)
    tj.tjDestroy(handle)
    return data


def jpeg_segments(data):
    """Marker codes up to SOS, to check that a fixture really has the structure it claims."""
    markers, i = [], 2
    while i + 4 <= len(data):
        marker = data[i + 1]
        length = struct.unpack(">H", data[i + 2:i + 4])[0]
        markers.append((marker, data[i + 4:i + 2 + length]))
        if marker == 0xDA:
            break
        i += 2 + length
    return markers


# ---------------------------------------------------------------------------------------------------

def build_decode_cases(photo):
    """photo: an RGB crop of a real image, odd-sized so partial MCUs and odd chroma edges are exercised."""
    # Real files, untouched: what real-world encoders produce.
    shutil.copyfile(os.path.join(MEDIA, "butterfly.jpg"), path("decode/butterfly.jpg"))
    add_decode("butterfly (original file, baseline 4:2:0)", "decode/butterfly.jpg")
    shutil.copyfile(os.path.join(MEDIA, "horse.png"), path("decode/horse.png"))
    add_decode("horse (original file, RGBA PNG)", "decode/horse.png")

    # JPEG variants of the crop.
    variants = [
        ("jpeg 4:2:0 baseline", "decode/q90_420.jpg", dict(quality=90, subsampling="4:2:0")),
        ("jpeg 4:2:2", "decode/q90_422.jpg", dict(quality=90, subsampling="4:2:2")),
        ("jpeg 4:4:4", "decode/q95_444.jpg", dict(quality=95, subsampling="4:4:4")),
        ("jpeg progressive 4:2:0", "decode/progressive_420.jpg", dict(quality=85, progressive=True)),
        ("jpeg progressive 4:4:4 optimized", "decode/progressive_444.jpg",
         dict(quality=92, progressive=True, optimize=True, subsampling="4:4:4")),
        ("jpeg with restart markers", "decode/restart_420.jpg", dict(quality=88, restart_marker_blocks=2)),
    ]
    for name, rel, options in variants:
        write_bytes(rel, jpeg_bytes(photo, **options))
        add_decode(name, rel)
    sampling = {rel: Image.open(path(rel)).layer for _, rel, _ in variants}
    assert sampling["decode/q90_422.jpg"][0][1:3] == (2, 1), sampling
    assert sampling["decode/q95_444.jpg"][0][1:3] == (1, 1), sampling

    write_bytes("decode/gray.jpg", jpeg_bytes(photo.convert("L"), quality=90))
    add_decode("jpeg grayscale", "decode/gray.jpg")

    # CMYK as Photoshop writes it (Adobe APP14, inverted values); Pillow writes CMYK;I with an Adobe marker.
    cmyk = photo.convert("CMYK")
    cmyk_array = np.asarray(cmyk).copy()
    cmyk_array[..., 3] = np.minimum(cmyk_array[..., :3].min(axis=2), 200)  # some black ink, K != 0
    cmyk_array[..., :3] -= cmyk_array[..., 3:4]
    cmyk = Image.fromarray(cmyk_array, "CMYK")
    write_bytes("decode/cmyk_adobe.jpg", jpeg_bytes(cmyk, quality=92))
    assert any(m == 0xEE for m, _ in jpeg_segments(open(path("decode/cmyk_adobe.jpg"), "rb").read()))
    add_decode("jpeg CMYK (Adobe, inverted)", "decode/cmyk_adobe.jpg")
    write_bytes("decode/ycck.jpg", ycck_jpeg_bytes(cmyk_array))
    adobe = [s for m, s in jpeg_segments(open(path("decode/ycck.jpg"), "rb").read()) if m == 0xEE]
    assert adobe and adobe[0][11] == 2, "expected Adobe transform 2 (YCCK)"
    add_decode("jpeg YCCK (Adobe transform 2)", "decode/ycck.jpg")

    # PNG variants. Pillow's convert("RGB") drops alpha (no compositing) and ignores gAMA/tRNS.
    photo.save(path("decode/rgb8.png"))
    add_decode("png RGB 8-bit", "decode/rgb8.png")
    rgba = photo.copy()
    alpha = np.fromfunction(lambda y, x: (x * 7 + y * 3) % 256, (photo.height, photo.width)).astype(np.uint8)
    alpha[:, :4] = 0  # fully transparent columns keep their colour in Pillow's convert("RGB")
    rgba.putalpha(Image.fromarray(alpha, "L"))
    rgba.save(path("decode/rgba8.png"))
    add_decode("png RGBA 8-bit (alpha dropped, not composited)", "decode/rgba8.png")
    photo.convert("L").save(path("decode/gray8.png"))
    add_decode("png gray 8-bit", "decode/gray8.png")
    gray_alpha = Image.merge("LA", (photo.convert("L"), Image.fromarray(alpha, "L")))
    gray_alpha.save(path("decode/gray_alpha8.png"))
    add_decode("png gray+alpha 8-bit", "decode/gray_alpha8.png")
    palette = photo.convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    palette.info["transparency"] = bytes([0, 128] + [255] * 62)  # a tRNS chunk with partial alpha
    palette.save(path("decode/palette_trns.png"), transparency=palette.info["transparency"])
    assert b"tRNS" in open(path("decode/palette_trns.png"), "rb").read()
    add_decode("png palette 8-bit with tRNS", "decode/palette_trns.png")
    palette16 = photo.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    palette16.save(path("decode/palette_4bit.png"), bits=4)
    add_decode("png palette 4-bit", "decode/palette_4bit.png")
    photo.convert("1").save(path("decode/gray_1bit.png"))
    add_decode("png gray 1-bit", "decode/gray_1bit.png")

    gray_levels = np.asarray(photo.convert("L")) >> 6  # 2-bit gray written by hand: Pillow can't
    packed = np.zeros((photo.height, (photo.width + 3) // 4), dtype=np.uint8)
    for x in range(photo.width):
        packed[:, x // 4] |= (gray_levels[:, x] << (6 - 2 * (x % 4))).astype(np.uint8)
    write_bytes("decode/gray_2bit.png", png_bytes(packed, 0, 2, width=photo.width))
    add_decode("png gray 2-bit", "decode/gray_2bit.png")

    rgb = np.asarray(photo).astype(np.uint32)
    # 16-bit samples whose low byte is not a copy of the high byte, so truncation vs rounding shows.
    rgb16 = (rgb << 8) | ((rgb * 37 + 101) % 256)
    write_bytes("decode/rgb16.png", png_bytes(rgb16, 2, 16))
    add_decode("png RGB 16-bit", "decode/rgb16.png")
    write_bytes("decode/rgb16_trns_gama.png", png_bytes(
        rgb16, 2, 16, [(b"gAMA", struct.pack(">I", 100000)), (b"tRNS", struct.pack(">HHH", *rgb16[0, 0]))]))
    add_decode("png RGB 16-bit with gAMA 1.0 and tRNS", "decode/rgb16_trns_gama.png")
    alpha16 = (alpha.astype(np.uint32) << 8) | 0x5A
    rgba16 = np.dstack([rgb16, alpha16])
    write_bytes("decode/rgba16.png", png_bytes(rgba16, 6, 16))
    add_decode("png RGBA 16-bit", "decode/rgba16.png", tolerance=1,
               note="libpng's simplified API rounds 16->8 (v*255/65535) where Pillow keeps the high byte; "
                    "exact raw 16-bit samples are only available without alpha (linear formats premultiply)")
    gray16 = (np.asarray(photo.convert("L")).astype(np.uint32) << 8) | 0xA7
    write_bytes("decode/gray_alpha16.png", png_bytes(np.dstack([gray16, alpha16]), 4, 16))
    add_decode("png gray+alpha 16-bit", "decode/gray_alpha16.png", tolerance=1,
               note="as RGBA 16-bit: libpng rounds, Pillow truncates")
    write_bytes("decode/gray16.png", png_bytes(gray16, 0, 16))
    high_byte = Image.fromarray((gray16 >> 8).astype(np.uint8), "L").convert("RGB")
    add_decode("png gray 16-bit", "decode/gray16.png", reference="high byte (not Pillow)",
               expected_image=high_byte,
               note="deliberate difference: Pillow opens 16-bit gray as mode I and convert('RGB') clips "
                    "the 0..65535 values at 255 (nearly all white); Sluice keeps the high byte like "
                    "Pillow does for 16-bit RGB")
    write_bytes("decode/rgb8_gama1.png", png_bytes(rgb, 2, 8, [(b"gAMA", struct.pack(">I", 100000))]))
    add_decode("png RGB 8-bit with gAMA 1.0 (ignored, as Pillow does)", "decode/rgb8_gama1.png")
    write_bytes("decode/rgb8_interlaced.png", png_bytes(rgb, 2, 8, interlaced=True))
    add_decode("png RGB 8-bit Adam7 interlaced", "decode/rgb8_interlaced.png")
    write_bytes("decode/rgba8_interlaced_gama.png", png_bytes(
        np.dstack([rgb, alpha]), 6, 8, [(b"gAMA", struct.pack(">I", 45455))], interlaced=True))
    add_decode("png RGBA 8-bit Adam7 interlaced with sRGB gAMA", "decode/rgba8_interlaced_gama.png")

    # The tensor case: a small image and its normalised float32 values.
    small = photo.crop((0, 0, 16, 12))
    small.save(path("tensor/small.png"))
    pixels = np.asarray(small).astype(np.float32)
    for name, mean, std in [
        ("imagenet", [0.485 * 255, 0.456 * 255, 0.406 * 255], [0.229 * 255, 0.224 * 255, 0.225 * 255]),
        ("efficientnet_lite", [127.0, 127.0, 127.0], [128.0, 128.0, 128.0]),
    ]:
        mean32, std32 = np.array(mean, np.float32), np.array(std, np.float32)
        values = ((pixels - mean32) / std32).astype(np.float32)[None]  # [1, H, W, 3]
        np.save(path(f"tensor/small_{name}.npy"), values)
        manifest["tensor"].append({"name": name, "input": "tensor/small.png", "mean": mean32.tolist(),
                                   "std": std32.tolist(), "expected": f"tensor/small_{name}.npy"})
    # What torchvision itself computes: ToTensor (x / 255) then Normalize with the 0...1 constants.
    # Same maths, different float32 rounding; the tests bound the gap.
    chained = torch.from_numpy(pixels) / 255
    chained = (chained - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    np.save(path("tensor/small_imagenet_torchvision.npy"), chained.numpy().astype(np.float32)[None])
    np.save(path("expected_raw.npy"), np.asarray(Image.open(path(manifest["decode"][2]["expected"]))))
    manifest["expected_raw"] = {"png": manifest["decode"][2]["expected"], "npy": "expected_raw.npy"}


def build_exif_cases(photo):
    """Every orientation 1...8 in both byte orders, plus Exif after an XMP APP1 and a PNG eXIf chunk."""
    base = jpeg_bytes(photo, quality=90)  # Pillow writes JFIF APP0 first
    for big_endian in (False, True):
        order = "be" if big_endian else "le"
        for orientation in range(1, 9):
            rel = f"exif/orientation{orientation}_{order}.jpg"
            write_bytes(rel, insert_jpeg_segment(base, 0xE1, exif_block(orientation, big_endian)))
            with Image.open(path(rel)) as im:
                assert im.getexif().get(0x0112) == orientation
            add_decode(f"exif orientation {orientation} ({order})", rel)
    xmp = b"http://ns.adobe.com/xap/1.0/\0<x:xmpmeta xmlns:x='adobe:ns:meta/'/>"
    with_exif = insert_jpeg_segment(base, 0xE1, exif_block(6, False))
    write_bytes("exif/xmp_then_exif6.jpg", insert_jpeg_segment(with_exif, 0xE1, xmp))
    add_decode("exif orientation 6 in an APP1 after an XMP APP1", "exif/xmp_then_exif6.jpg")
    exif = Image.Exif()
    exif[0x0112] = 8
    photo.save(path("exif/png_exif8.png"), exif=exif.tobytes())
    assert b"eXIf" in open(path("exif/png_exif8.png"), "rb").read()
    add_decode("png eXIf orientation 8", "exif/png_exif8.png")
    write_bytes("exif/orientation9_ignored.jpg", insert_jpeg_segment(base, 0xE1, exif_block(9, False)))
    add_decode("exif orientation 9 (invalid, ignored)", "exif/orientation9_ignored.jpg")


def build_resize_cases(source):
    source.save(path("resize/source.png"))
    small = source.crop((60, 40, 101, 69))  # 41x29
    small.save(path("resize/small.png"))
    cases = [
        ("source.png", (97, 61), "shrink, non-integer factors"),
        ("source.png", (90, 187), "shrink x, enlarge y"),
        ("source.png", (7, 5), "extreme shrink"),
        ("source.png", (200, 91), "width unchanged (vertical pass only)"),
        ("small.png", (113, 83), "enlarge, non-integer factors"),
    ]
    for file, (w, h), note in cases:
        image = Image.open(path("resize/" + file)).convert("RGB")
        for name, resample in (("bicubic", Image.Resampling.BICUBIC), ("bilinear", Image.Resampling.BILINEAR)):
            rel = f"resize/{os.path.splitext(file)[0]}_{w}x{h}_{name}.png"
            save_expected(rel, image.resize((w, h), resample))
            manifest["resize"].append({"name": f"{name} {image.width}x{image.height}->{w}x{h} ({note})",
                                       "input": "resize/" + file, "width": w, "height": h,
                                       "filter": name, "expected": rel})


def torchvision_resize_shorter(image, size, resample):
    """torchvision 0.14 F.resize(img, [size]) on a PIL image (_compute_resized_output_size)."""
    w, h = image.size
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = size, int(size * long / short)
    new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    return image.resize((new_w, new_h), resample)


def torchvision_center_crop(image, crop_height, crop_width):
    """torchvision 0.14 F.center_crop on a PIL image (pads with 0 when the crop is larger)."""
    image_width, image_height = image.size
    if crop_width > image_width or crop_height > image_height:
        left = (crop_width - image_width) // 2 if crop_width > image_width else 0
        top = (crop_height - image_height) // 2 if crop_height > image_height else 0
        right = (crop_width - image_width + 1) // 2 if crop_width > image_width else 0
        bottom = (crop_height - image_height + 1) // 2 if crop_height > image_height else 0
        padded = Image.new(image.mode, (image_width + left + right, image_height + top + bottom), 0)
        padded.paste(image, (left, top))
        image = padded
        image_width, image_height = image.size
        if crop_width == image_width and crop_height == image_height:
            return image
    crop_top = int(round((image_height - crop_height) / 2.0))
    crop_left = int(round((image_width - crop_width) / 2.0))
    return image.crop((crop_left, crop_top, crop_left + crop_width, crop_top + crop_height))


def build_pipeline_cases():
    shutil.copyfile(os.path.join(MEDIA, "grace_hopper.jpg"), path("pipeline/grace_hopper.jpg"))
    cases = [
        ("pipeline/grace_hopper.jpg", 256, 224, "bilinear"),   # portrait 512x600, torchvision's default
        ("decode/butterfly.jpg", 256, 224, "bicubic"),         # landscape 493x356
    ]
    for rel, shorter, crop, name in cases:
        file = os.path.basename(rel)
        resample = Image.Resampling.BICUBIC if name == "bicubic" else Image.Resampling.BILINEAR
        image = pillow_decode(rel)
        resized = torchvision_resize_shorter(image, shorter, resample)
        result = torchvision_center_crop(resized, crop, crop)
        expected = f"pipeline/{os.path.splitext(file)[0]}_{shorter}_{crop}_{name}.png"
        save_expected(expected, result)
        manifest["pipeline"].append({"name": f"{file} Resize({shorter}, {name}) + CenterCrop({crop})",
                                     "input": rel, "shorter": shorter, "crop": crop, "filter": name,
                                     "resized_width": resized.width, "resized_height": resized.height,
                                     "expected": expected})
    # Centre crop larger than the image (both sides, one side): torchvision pads with zeros; odd differences
    # round half to even.
    tiny = Image.open(path("resize/small.png")).convert("RGB")  # 41x29
    for ch, cw in ((32, 48), (20, 36), (27, 40), (20, 48)):
        expected = f"pipeline/small_crop_{ch}x{cw}.png"
        save_expected(expected, torchvision_center_crop(tiny, ch, cw))
        manifest["pipeline"].append({"name": f"CenterCrop({ch}, {cw}) of 41x29", "input": "resize/small.png",
                                     "crop_height": ch, "crop_width": cw, "expected": expected})


def corrupt_crc(png, kind):
    """Flips one bit pattern in the CRC of the first `kind` chunk."""
    at = png.index(kind)
    length = struct.unpack(">I", png[at - 4:at])[0]
    crc_at = at + 4 + length
    return png[:crc_at] + bytes([png[crc_at] ^ 0xFF]) + png[crc_at + 1:]


def with_sof(jpeg, marker=None, precision=None):
    """The same file with its SOF0 marker and/or sample precision changed."""
    at = jpeg.index(b"\xff\xc0")
    data = bytearray(jpeg)
    if marker is not None:
        data[at + 1] = marker
    if precision is not None:
        data[at + 4] = precision
    return bytes(data)


def build_bad_cases(photo):
    good = jpeg_bytes(photo, quality=90)
    png = open(path("decode/rgb8.png"), "rb").read()
    gif = io.BytesIO()
    photo.crop((0, 0, 8, 8)).save(gif, "GIF")
    cases = [
        # (file, bytes, Sluice's error, whether Pillow accepts the file)
        ("bad/truncated.jpg", good[: len(good) * 3 // 5], "truncated", False),
        ("bad/header_only.jpg", good[:2] + b"\xff\xe0\x00\x10JFIF", "truncated", False),
        ("bad/bad_crc_ihdr.png", corrupt_crc(png, b"IHDR"), "corrupt", False),
        # Pillow does not check IDAT CRCs; libpng does, and so Sluice rejects this one.
        ("bad/bad_crc_idat.png", corrupt_crc(png, b"IDAT"), "corrupt", True),
        ("bad/truncated.png", png[: len(png) // 2], "truncated", False),
        ("bad/text.jpg", b"This is a text file with a .jpg name, not an image.\n", "unknownFormat", False),
        ("bad/empty.jpg", b"", "empty", False),
        # Valid structure, JPEG processes libjpeg-turbo 2.1 does not decode (nor does Pillow).
        ("bad/lossless_sof3.jpg", with_sof(good, marker=0xC3), "unsupported", False),
        ("bad/precision12.jpg", with_sof(good, precision=12), "unsupported", False),
        # Named .png, really a GIF: found by its magic bytes, and not a format Sluice decodes.
        ("bad/image.gif.png", gif.getvalue(), "unsupported", True),
    ]
    for rel, data, error, pillow_accepts in cases:
        write_bytes(rel, data)
        try:
            with Image.open(path(rel)) as im:
                im.load()
            pillow = "accepts"
        except (OSError, SyntaxError, ValueError) as failure:
            pillow = f"{type(failure).__name__}: {failure}"
        assert (pillow == "accepts") == pillow_accepts, (rel, pillow)
        manifest["bad"].append({"input": rel, "error": error, "pillow": pillow})


def main():
    # Remove only what this script writes: the folder is shared with other SluiceMedia fixtures.
    for folder in OWN_FOLDERS:
        shutil.rmtree(os.path.join(OUT, folder), ignore_errors=True)
    for name in OWN_FILES:
        if os.path.exists(os.path.join(OUT, name)):
            os.remove(os.path.join(OUT, name))
    os.makedirs(OUT, exist_ok=True)

    chelsea = Image.open(os.path.join(MEDIA, "chelsea.png")).convert("RGB")   # 451x300 cat photo
    photo = chelsea.crop((170, 60, 231, 103))                                 # 61x43, odd sizes
    exif_photo = chelsea.crop((150, 50, 187, 73))                             # 37x23, not square
    resize_source = Image.open(os.path.join(MEDIA, "astronaut.png")).convert("RGB").crop((170, 50, 370, 200))

    build_decode_cases(photo)
    build_exif_cases(exif_photo)
    build_resize_cases(resize_source)
    build_pipeline_cases()
    build_bad_cases(photo)

    manifest["provenance"] = {"generator": "scripts/reference/images.py", "seed": None,
                              "pillow": PIL.__version__, "torch": torch.__version__, "numpy": np.__version__,
                              "inputs": "crops and re-encodings of real photos from ../shared/media/images"}
    with open(path("manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    own = [os.path.join(d, n) for folder in OWN_FOLDERS for d, _, ns in os.walk(os.path.join(OUT, folder)) for n in ns]
    own += [os.path.join(OUT, name) for name in OWN_FILES]
    total = sum(os.path.getsize(p) for p in own)
    files = len(own)
    print(f"wrote {files} files, {total / 1024:.0f} KiB, into {OUT}")
    assert total < 2 * 1024 * 1024


if __name__ == "__main__":
    sys.exit(main())
