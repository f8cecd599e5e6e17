#!/usr/bin/env python3
"""PyTorch reference for HorNet (raoyongming/HorNet, `hornet.py`, MIT).

The module tree below is written from the official `hornet.py` with the same module and parameter
names (downsample_layers, stages.S.J.{gamma1,gamma2,norm1,gnconv.{proj_in,dwconv,pws,proj_out},norm2,
pwconv1,pwconv2}, norm, head; GlobalLocalFilter's dw, complex_weight, pre_norm, post_norm), so official
state dicts load into it unchanged. timm is not needed: DropPath is the identity at eval and the
initialisers are irrelevant because every weight is set from the deterministic recipe below.

Deterministic weights (implemented identically in Sources/SluiceModels/HorNet.swift, `HorNetRecipe`):
  seed  = FNV-1a 64 of the key's UTF-8 bytes
  z_i   = splitmix64 finaliser of (seed + (i + 1) * 0x9E3779B97F4A7C15) mod 2^64, i = flat index
  u_i   = (z_i >> 40) / 2^23 - 1                   (exactly representable, in [-1, 1))
  value = float32(offset + scale * u_i)            (float64 arithmetic, one rounding to float32)
with (offset, scale) chosen per key (`recipe_offset_scale`). The input images use the key "input".

Writes into Tests/SluiceModelsTests/Fixtures/hornet/:
  manifest.json           every case: configuration, input shape, weights source, logits file
  CASE.logits.npy         logits of each reduced configuration (and full-size tiny 7x7 / tiny GF)
  reduced_checkpoint.pth  a small official-format checkpoint, {'model': state_dict}, for one case
  mmpretrain_keys.json    [official, mmpretrain] key pairs as mmpretrain's hornet2mmpretrain.py renames them

Run with Debian's interpreter, which has torch:
    /usr/bin/python3 scripts/reference/hornet.py            # fixtures
    /usr/bin/python3 scripts/reference/hornet.py export NAME OUT.pth      # recipe weights for a benchmark
    /usr/bin/python3 scripts/reference/hornet.py bench NAME WEIGHTS THREADS BATCH [SECONDS]
"""
import json
import math
import os
import sys
import time
from functools import partial

import numpy as np
import torch
import torch.fft
import torch.nn as nn
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "Tests", "SluiceModelsTests", "Fixtures", "hornet")


# ----------------------------------------------------------------------------------------------
# Model: official module names and forward.

class LayerNorm(nn.Module):
    def __init__(self, normalized_shape, eps=1e-6, data_format="channels_last"):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(normalized_shape))
        self.bias = nn.Parameter(torch.zeros(normalized_shape))
        self.eps = eps
        self.data_format = data_format
        self.normalized_shape = (normalized_shape,)

    def forward(self, x):
        if self.data_format == "channels_last":
            return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        x = (x - u) / torch.sqrt(s + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


def get_dwconv(dim, kernel, bias):
    return nn.Conv2d(dim, dim, kernel_size=kernel, padding=(kernel - 1) // 2, bias=bias, groups=dim)


class GlobalLocalFilter(nn.Module):
    def __init__(self, dim, h=14, w=8):
        super().__init__()
        self.dw = nn.Conv2d(dim // 2, dim // 2, kernel_size=3, padding=1, bias=False, groups=dim // 2)
        self.complex_weight = nn.Parameter(torch.zeros(dim // 2, h, w, 2, dtype=torch.float32))
        self.pre_norm = LayerNorm(dim, eps=1e-6, data_format="channels_first")
        self.post_norm = LayerNorm(dim, eps=1e-6, data_format="channels_first")

    def forward(self, x):
        x = self.pre_norm(x)
        x1, x2 = torch.chunk(x, 2, dim=1)
        x1 = self.dw(x1)
        x2 = x2.to(torch.float32)
        B, C, a, b = x2.shape
        x2 = torch.fft.rfft2(x2, dim=(2, 3), norm="ortho")
        weight = self.complex_weight
        if not weight.shape[1:3] == x2.shape[2:4]:
            weight = F.interpolate(weight.permute(3, 0, 1, 2), size=x2.shape[2:4], mode="bilinear",
                                   align_corners=True).permute(1, 2, 3, 0)
        weight = torch.view_as_complex(weight.contiguous())
        x2 = x2 * weight
        x2 = torch.fft.irfft2(x2, s=(a, b), dim=(2, 3), norm="ortho")
        x = torch.cat([x1.unsqueeze(2), x2.unsqueeze(2)], dim=2).reshape(B, 2 * C, a, b)
        return self.post_norm(x)


class gnconv(nn.Module):
    def __init__(self, dim, order=5, gflayer=None, h=14, w=8, s=1.0):
        super().__init__()
        self.order = order
        self.dims = [dim // 2 ** i for i in range(order)]
        self.dims.reverse()
        self.proj_in = nn.Conv2d(dim, 2 * dim, 1)
        if gflayer is None:
            self.dwconv = get_dwconv(sum(self.dims), 7, True)
        else:
            self.dwconv = gflayer(sum(self.dims), h=h, w=w)
        self.proj_out = nn.Conv2d(dim, dim, 1)
        self.pws = nn.ModuleList([nn.Conv2d(self.dims[i], self.dims[i + 1], 1) for i in range(order - 1)])
        self.scale = s

    def forward(self, x):
        fused_x = self.proj_in(x)
        pwa, abc = torch.split(fused_x, (self.dims[0], sum(self.dims)), dim=1)
        dw_abc = self.dwconv(abc) * self.scale
        dw_list = torch.split(dw_abc, self.dims, dim=1)
        x = pwa * dw_list[0]
        for i in range(self.order - 1):
            x = self.pws[i](x) * dw_list[i + 1]
        return self.proj_out(x)


class Block(nn.Module):
    def __init__(self, dim, layer_scale_init_value=1e-6, gnconv=gnconv):
        super().__init__()
        self.norm1 = LayerNorm(dim, eps=1e-6, data_format="channels_first")
        self.gnconv = gnconv(dim)
        self.norm2 = LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma1 = nn.Parameter(layer_scale_init_value * torch.ones(dim))
        self.gamma2 = nn.Parameter(layer_scale_init_value * torch.ones(dim))

    def forward(self, x):
        C = x.shape[1]
        x = x + self.gamma1.view(C, 1, 1) * self.gnconv(self.norm1(x))   # DropPath: identity at eval
        input = x
        x = x.permute(0, 2, 3, 1)
        x = self.norm2(x)
        x = self.pwconv1(x)
        x = self.act(x)
        x = self.pwconv2(x)
        x = self.gamma2 * x
        x = x.permute(0, 3, 1, 2)
        return input + x


class HorNet(nn.Module):
    def __init__(self, in_chans=3, num_classes=1000, depths=(3, 3, 9, 3), base_dim=96, gnconv=gnconv):
        super().__init__()
        dims = [base_dim, base_dim * 2, base_dim * 4, base_dim * 8]
        self.downsample_layers = nn.ModuleList()
        self.downsample_layers.append(nn.Sequential(
            nn.Conv2d(in_chans, dims[0], kernel_size=4, stride=4),
            LayerNorm(dims[0], eps=1e-6, data_format="channels_first")))
        for i in range(3):
            self.downsample_layers.append(nn.Sequential(
                LayerNorm(dims[i], eps=1e-6, data_format="channels_first"),
                nn.Conv2d(dims[i], dims[i + 1], kernel_size=2, stride=2)))
        if not isinstance(gnconv, list):
            gnconv = [gnconv] * 4
        self.stages = nn.ModuleList()
        for i in range(4):
            self.stages.append(nn.Sequential(*[Block(dim=dims[i], gnconv=gnconv[i]) for _ in range(depths[i])]))
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)
        self.head = nn.Linear(dims[-1], num_classes)

    def forward(self, x):
        for i in range(4):
            x = self.downsample_layers[i](x)
            x = self.stages[i](x)
        return self.head(self.norm(x.mean([-2, -1])))


def build(config):
    """A HorNet from a configuration dict with the official constructor's arguments:
    base_dim, depths, orders (one per stage), gflayer (one per stage: null or [h, w]), s, num_classes."""
    parts = []
    for order, gf in zip(config["orders"], config["gflayer"]):
        if gf is None:
            parts.append(partial(gnconv, order=order, s=config["s"]))
        else:
            parts.append(partial(gnconv, order=order, s=config["s"], h=gf[0], w=gf[1], gflayer=GlobalLocalFilter))
    return HorNet(depths=config["depths"], base_dim=config["base_dim"], gnconv=parts,
                  num_classes=config["num_classes"]).eval()


def official_config(name):
    """The eight official constructors (hornet.py): base_dim per size, GF at stages 3-4 with (14,8),(7,4)."""
    size, kind = name[len("hornet_"):].split("_")
    base_dim = {"tiny": 64, "small": 96, "base": 128, "large": 192}[size]
    gf = [None, None, [14, 8], [7, 4]] if kind == "gf" else [None] * 4
    # The released HorNet-L weights are ImageNet-22k classifiers.
    return {"base_dim": base_dim, "depths": [2, 3, 18, 2], "orders": [2, 3, 4, 5], "gflayer": gf,
            "s": 1.0 / 3.0, "num_classes": 21841 if size == "large" else 1000}


# ----------------------------------------------------------------------------------------------
# Deterministic weights and inputs.

MASK = (1 << 64) - 1


def fnv1a64(text):
    h = 0xCBF29CE484222325
    for byte in text.encode("utf-8"):
        h = ((h ^ byte) * 0x100000001B3) & MASK
    return h


RECIPE_SEED = "recipe: splitmix64 of the FNV-1a 64 hash of each key name (scripts/reference/hornet.py)"


def recipe_uniform(key, count):
    """u in [-1, 1), float64, from the splitmix64 finaliser (numpy uint64 arithmetic wraps mod 2^64)."""
    seed = np.uint64(fnv1a64(key))
    i = np.arange(1, count + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = seed + i * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(40)).astype(np.float64) / float(1 << 23) - 1.0


def recipe_offset_scale(key, shape):
    """(offset, scale) per parameter, keeping activations in a useful range: norm weights near 1,
    conv/linear weights with variance 1/fan_in (uniform: scale = sqrt(3 / fan_in)), moderate biases
    and layer scales (the trained ones are far from their 1e-6 init too)."""
    name = key.split(".")[-1]
    if name in ("gamma1", "gamma2"):
        return 0.0, 0.5
    if name == "complex_weight":
        return 0.0, 1.0
    if name == "bias":
        return 0.0, 0.2
    if len(shape) == 1:   # every rank-1 weight is a LayerNorm weight
        return 1.0, 0.25
    fan_in = int(np.prod(shape[1:]))
    return 0.0, math.sqrt(3.0 / fan_in)


def recipe_tensor(key, shape):
    offset, scale = recipe_offset_scale(key, shape)
    u = recipe_uniform(key, int(np.prod(shape)))
    return (offset + scale * u).astype(np.float32).reshape(shape)


def recipe_state_dict(model):
    return {k: torch.from_numpy(recipe_tensor(k, tuple(v.shape))) for k, v in model.state_dict().items()}


def recipe_input(shape):
    """NCHW input: u itself (uniform in [-1, 1)) from the key "input"."""
    return torch.from_numpy(recipe_uniform("input", int(np.prod(shape))).astype(np.float32).reshape(shape))


# ----------------------------------------------------------------------------------------------

REDUCED = {"base_dim": 16, "depths": [1, 1, 2, 1], "orders": [2, 3, 4, 5], "gflayer": [None] * 4,
           "s": 1.0 / 3.0, "num_classes": 10}
REDUCED_GF = dict(REDUCED, gflayer=[None, None, [14, 8], [7, 4]])
SMALLEST = {"base_dim": 8, "depths": [1, 1, 1, 1], "orders": [2, 3, 4, 5], "gflayer": [None, None, None, [2, 2]],
            "s": 1.0 / 3.0, "num_classes": 7}

CASES = [
    # name, configuration, input NCHW, weights
    ("reduced_7x7_square", REDUCED, [2, 3, 64, 64], "recipe"),
    ("reduced_7x7_nonsquare", REDUCED, [1, 3, 64, 96], "recipe"),
    ("reduced_gf_native", REDUCED_GF, [1, 3, 224, 224], "recipe"),          # 14x14 and 7x7 grids: no resize
    ("reduced_gf_resized", REDUCED_GF, [2, 3, 160, 160], "recipe"),         # 10x10 / 5x5: weight resized down
    ("reduced_gf_nonsquare", REDUCED_GF, [1, 3, 224, 288], "recipe"),       # 14x18 / 7x9: resized, odd width
    ("smallest_checkpoint", SMALLEST, [1, 3, 64, 64], "reduced_checkpoint.pth"),  # 2x2 grid at stage 4
    ("full_tiny_7x7", official_config("hornet_tiny_7x7"), [1, 3, 224, 224], "recipe"),
    ("full_tiny_gf", official_config("hornet_tiny_gf"), [1, 3, 224, 224], "recipe"),
]


def mmpretrain_name(k):
    """tools/model_converters/hornet2mmpretrain.py (open-mmlab/mmpretrain), transcribed."""
    if k.startswith("head"):
        return k.replace("head.", "head.fc.")
    if k.startswith("norm"):
        new = k.replace("norm.", "norm3.")
    elif "gnconv.pws" in k:
        new = k.replace("gnconv.pws", "gnconv.projs")
    elif "gamma1" in k:
        new = k.replace("gamma1", "gamma1.weight")
    elif "gamma2" in k:
        new = k.replace("gamma2", "gamma2.weight")
    else:
        new = k
    return "backbone." + new


def write_fixtures():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    manifest = []
    for name, config, shape, weights in CASES:
        model = build(config)
        sd = recipe_state_dict(model)
        if weights != "recipe":
            torch.save({"model": sd}, os.path.join(OUT, weights))
            sd = torch.load(os.path.join(OUT, weights), map_location="cpu")["model"]
        model.load_state_dict(sd)
        x = recipe_input(shape)
        with torch.no_grad():
            logits = model(x)
            # Sensitivity check: the last block and the GF branch must matter.
            last = model.stages[3][-1]
            saved = last.gamma1.data.clone()
            last.gamma1.data.zero_()
            changed = (model(x) - logits).abs().max().item() / logits.abs().max().item()
            last.gamma1.data.copy_(saved)
        np.save(os.path.join(OUT, name + ".logits.npy"), logits.numpy().astype(np.float32))
        manifest.append({"name": name, "configuration": config, "input_shape": shape, "weights": weights,
                         "logits": name + ".logits.npy",
                         "parameters": sum(v.numel() for v in sd.values())})
        print("%-24s logits %s std %.3f max %.3f | last block gnconv changes logits by %.3f" % (
            name, tuple(logits.shape), logits.std().item(), logits.abs().max().item(), changed))
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump({"generator": "scripts/reference/hornet.py", "seed": RECIPE_SEED, "torch": torch.__version__,
                   "numpy": np.__version__, "cases": manifest},
                  f, indent=1)
    # mmpretrain names for every key of the reduced GF configuration (covers pws, gammas, norm, head, GF).
    pairs = [[k, mmpretrain_name(k)] for k in build(REDUCED_GF).state_dict().keys()]
    with open(os.path.join(OUT, "mmpretrain_keys.json"), "w") as f:
        json.dump({"configuration": REDUCED_GF, "pairs": pairs}, f, indent=0)


def export(name, path):
    model = build(official_config(name))
    sd = recipe_state_dict(model)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    torch.save(sd, path)
    print("wrote %s (%d tensors, %d parameters)" % (path, len(sd), sum(v.numel() for v in sd.values())))


def bench(name, weights, threads, batch, seconds=3.0):
    torch.set_num_threads(threads)
    model = build(official_config(name))
    model.load_state_dict(torch.load(weights, map_location="cpu"))
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((batch, 3, 224, 224), dtype=np.float32))
    with torch.no_grad():
        model(x)
        count, start = 0, time.perf_counter()
        while count < 5 or time.perf_counter() - start < seconds:
            model(x)
            count += 1
        elapsed = time.perf_counter() - start
    print(json.dumps({"engine": "torch", "version": torch.__version__, "threads": threads, "batch": batch,
                      "kind": "model", "images_per_s": count * batch / elapsed,
                      "ms_per_batch": 1000 * elapsed / count}), flush=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "export":
        export(sys.argv[2], sys.argv[3])
    elif len(sys.argv) > 1 and sys.argv[1] == "bench":
        bench(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]),
              float(sys.argv[6]) if len(sys.argv) > 6 else 3.0)
    else:
        write_fixtures()
