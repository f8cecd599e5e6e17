#!/usr/bin/python3
"""Checkpoint fixtures for the SluiceModels readers (Tests/SluiceModelsTests/CheckpointTests.swift).

Saves one small state dict in every format Sluice reads, plus the values the Swift test must get:

  zip.pth                      torch.save, zip format (torch >= 1.6)
  legacy.pth                   torch.save(..., _use_new_zipfile_serialization=False)
  zip_protocol4.pth            zip format, pickle protocol 4 (FRAME, MEMOIZE, STACK_GLOBAL, SHORT_BINUNICODE)
  legacy_protocol5.pth         legacy format, pickle protocol 5 (every pickle framed)
  wrapped_model.pth            {'model': sd + non-tensor entries, 'epoch', 'optimizer'}   (zip)
  wrapped_state_dict.pth       {'state_dict': sd + non-tensor entries, 'epoch'}           (legacy)
  tiny.safetensors             written by hand (struct + json), __metadata__ included
  stored.npz / compressed.npz  np.savez / np.savez_compressed (bfloat16 stored as float32)
  single.npy                   one array
  fortran.npy                  fc.weight in Fortran (column-major) order
  expected.npz                 every tensor as contiguous float32 (np.savez)
  expected.json                key order and original dtypes per format
  truncated/*                  cut copies of each format, for the error tests
  not_a_checkpoint.txt         plain text

The state dict covers: float32 conv/bn/linear weights from a real module (so the OrderedDict carries
`_metadata`, which the pickle BUILDs), int64 `num_batches_tracked` (0-d), float16, bfloat16, float64
and int32 tensors, a transposed view (`.t()`, non-contiguous, same storage as fc.weight), a window
into another tensor's storage (storage offset + strides), a 0-d float tensor and an nn.Parameter.

With the EfficientNet-Lite0 weights present ($SLUICE_LITE0_WEIGHTS or .work/weights/...), it also
prints the key count and checksums the Swift test hard-codes.

Run with the system interpreter that has torch:  /usr/bin/python3 scripts/reference/checkpoints.py
"""
import collections
import json
import os
import struct

import numpy as np
import torch
from torch import nn

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "Tests", "SluiceModelsTests", "Fixtures", "checkpoints")
LITE0 = os.environ.get("SLUICE_LITE0_WEIGHTS",
                       os.path.join(ROOT, ".work", "weights", "efficientnet-lite0-57934424.pth"))

SAFETENSORS_DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
                      torch.float64: "F64", torch.int64: "I64", torch.int32: "I32"}


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 5)


def make_state_dict():
    torch.manual_seed(20261123)
    model = Tiny()
    with torch.no_grad():
        model.bn.weight.uniform_(0.5, 1.5)
        model.bn.bias.normal_()
        model.bn.running_mean.normal_()
        model.bn.running_var.uniform_(0.5, 2.0)
        model.bn.num_batches_tracked.fill_(1234567)
    sd = model.state_dict()  # an OrderedDict with a `_metadata` attribute, like every real checkpoint
    sd["fc.weight_t"] = sd["fc.weight"].t()  # non-contiguous view sharing fc.weight's storage
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6) * 0.25 - 2.0
    sd["shared.base"] = base
    sd["shared.window"] = base[1:3, 2:5]  # storage offset 8, strides (6, 1), same storage as shared.base
    sd["half.weight"] = torch.randn(3, 4).half()
    sd["bf16.weight"] = torch.randn(2, 3).bfloat16()
    sd["double.weight"] = torch.randn(3, dtype=torch.float64)
    sd["int32.index"] = torch.tensor([3, -1, 40000, 7], dtype=torch.int32)
    sd["scalar.temperature"] = torch.tensor(0.5)
    sd["param.weight"] = nn.Parameter(torch.randn(2, 2))  # pickled through torch._utils._rebuild_parameter
    assert not sd["fc.weight_t"].is_contiguous() and not sd["shared.window"].is_contiguous()
    assert sd["fc.weight_t"].storage().data_ptr() == sd["fc.weight"].storage().data_ptr()
    return sd


def with_extras(sd):
    """The same tensors plus non-tensor entries the reader must skip."""
    extended = collections.OrderedDict(sd)
    extended["meta.version"] = 3
    extended["meta.name"] = "tiny"
    return extended


def tensor_bytes(t):
    flat = t.detach().contiguous().reshape(-1)
    return flat.view(torch.uint8).numpy().tobytes()


def write_safetensors(path, sd, metadata):
    header = {"__metadata__": metadata}
    blobs, offset = [], 0
    for key, t in sd.items():
        raw = tensor_bytes(t)
        header[key] = {"dtype": SAFETENSORS_DTYPES[t.dtype], "shape": list(t.shape),
                       "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - (8 + len(text)) % 8) % 8)  # pad so the data starts 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for raw in blobs:
            f.write(raw)


def numpy_arrays(sd):
    # numpy has no bfloat16: store it as float32 (exact), as anyone exporting to .npz would
    return {k: (t.float() if t.dtype == torch.bfloat16 else t).detach().contiguous().numpy()
            for k, t in sd.items()}


def weighted_checksum(t):
    """sum of x[i] * (i % 7 + 1) over the C-order flattening, in float64 (CheckpointTests computes the same)."""
    flat = t.detach().double().contiguous().reshape(-1)
    weights = (torch.arange(flat.numel(), dtype=torch.int64) % 7 + 1).double()
    return (flat * weights).sum().item()


def truncate(name, keep, source=None):
    with open(os.path.join(OUT, source or name), "rb") as f:
        data = f.read()
    keep = keep if isinstance(keep, int) else int(len(data) * keep)
    with open(os.path.join(OUT, "truncated", name), "wb") as f:
        f.write(data[:keep])


def write_manifest():
    """Provenance of the fixtures: what made them, the seed, the libraries."""
    manifest = {
        "generator": "scripts/reference/checkpoints.py",
        "seed": 20261123,
        "versions": {"torch": torch.__version__, "numpy": np.__version__},
        "contents": "one small state dict (module Tiny) in every format Sluice reads, the expected values "
                    "(expected.npz, expected.json) and truncated copies; see the script's docstring",
    }
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")


def main():
    os.makedirs(os.path.join(OUT, "truncated"), exist_ok=True)
    write_manifest()
    sd = make_state_dict()

    torch.save(sd, os.path.join(OUT, "zip.pth"))
    torch.save(sd, os.path.join(OUT, "legacy.pth"), _use_new_zipfile_serialization=False)
    torch.save(sd, os.path.join(OUT, "zip_protocol4.pth"), pickle_protocol=4)
    torch.save(sd, os.path.join(OUT, "legacy_protocol5.pth"), pickle_protocol=5,
               _use_new_zipfile_serialization=False)
    torch.save({"model": with_extras(sd), "epoch": 3, "optimizer": {"lr": 0.1, "momentum": 0.9}},
               os.path.join(OUT, "wrapped_model.pth"))
    torch.save({"epoch": 7, "state_dict": with_extras(sd), "arch": "tiny"},
               os.path.join(OUT, "wrapped_state_dict.pth"), _use_new_zipfile_serialization=False)
    write_safetensors(os.path.join(OUT, "tiny.safetensors"), sd,
                      {"format": "pt", "origin": "sluice checkpoints.py"})
    arrays = numpy_arrays(sd)
    np.savez(os.path.join(OUT, "stored.npz"), **arrays)
    np.savez_compressed(os.path.join(OUT, "compressed.npz"), **arrays)
    np.save(os.path.join(OUT, "single.npy"), arrays["conv.weight"])
    np.save(os.path.join(OUT, "fortran.npy"), np.asfortranarray(arrays["fc.weight"]))  # fortran_order: True

    expected = {k: t.detach().float().contiguous().numpy() for k, t in sd.items()}
    np.savez(os.path.join(OUT, "expected.npz"), **expected)
    torch_dtypes = {k: SAFETENSORS_DTYPES[t.dtype] for k, t in sd.items()}
    numpy_dtypes = {k: {"float32": "F32", "float16": "F16", "float64": "F64", "int64": "I64",
                        "int32": "I32"}[str(a.dtype)] for k, a in arrays.items()}
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump({"keys": list(sd.keys()), "torch_dtypes": torch_dtypes, "numpy_dtypes": numpy_dtypes,
                   "safetensors_metadata": {"format": "pt", "origin": "sluice checkpoints.py"}},
                  f, indent=1)
        f.write("\n")

    # Round-trip through torch itself, so the fixtures are known to be what torch reads.
    for name in ["zip.pth", "legacy.pth", "zip_protocol4.pth", "legacy_protocol5.pth"]:
        loaded = torch.load(os.path.join(OUT, name))
        assert list(loaded) == list(sd) and all(torch.equal(loaded[k], sd[k]) for k in sd), name

    truncate("zip.pth", 0.6)
    truncate("legacy.pth", 0.8)                  # cut inside the storage data
    truncate("legacy_pickle.pth", 300, "legacy.pth")  # cut inside the state-dict pickle
    truncate("tiny.safetensors", 0.8)            # header intact, data short
    truncate("safetensors_header.safetensors", 40, "tiny.safetensors")  # cut inside the JSON header
    truncate("stored.npz", 0.5)
    with open(os.path.join(OUT, "not_a_checkpoint.txt"), "w") as f:
        f.write("These are not the weights you are looking for.\n")

    for name in sorted(os.listdir(OUT)):
        path = os.path.join(OUT, name)
        if os.path.isfile(path):
            print(f"{name:32s} {os.path.getsize(path):6d} bytes")

    if os.path.exists(LITE0):
        lite0 = torch.load(LITE0, map_location="cpu")
        print("\nEfficientNet-Lite0:", LITE0)
        print("  keys:", len(lite0))
        print("  non-contiguous tensors:", sum(not t.is_contiguous() for t in lite0.values()))
        print("  _fc.bias sum (float64): %.9f" % lite0["_fc.bias"].double().sum().item())
        print("  _conv_stem.weight sum (float64): %.9f" % lite0["_conv_stem.weight"].double().sum().item())
        print("  _fc.weight sum of squares (float64): %.9f" % lite0["_fc.weight"].double().pow(2).sum().item())
        print("  all tensors sum (float64): %.6f" % sum(t.double().sum().item() for t in lite0.values()))
        # Position-weighted (C order), so a stride mix-up that permutes elements changes it.
        print("  all tensors position-weighted checksum: %.6f" % sum(weighted_checksum(t) for t in lite0.values()))
        print("  _conv_stem.weight position-weighted checksum: %.9f" % weighted_checksum(lite0["_conv_stem.weight"]))
        stem = lite0["_conv_stem.weight"]
        print("  _conv_stem.weight[0,0,0,0], [31,2,2,1], [5,1,0,2]: %r %r %r" % (
            stem[0, 0, 0, 0].item(), stem[31, 2, 2, 1].item(), stem[5, 1, 0, 2].item()))
        print("  _fc.weight[999,1279], _fc.bias[0]: %r %r" % (
            lite0["_fc.weight"][999, 1279].item(), lite0["_fc.bias"][0].item()))
        tracked = [k for k in lite0 if k.endswith("num_batches_tracked")]
        print("  num_batches_tracked keys:", len(tracked))


if __name__ == "__main__":
    main()
