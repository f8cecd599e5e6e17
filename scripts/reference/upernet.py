#!/usr/bin/env python3
"""PyTorch reference for UperNet on HorNet (raoyongming/HorNet `semantic_segmentation/`, mmseg 0.x).

Module tree with the official names, so a real mmseg checkpoint's `state_dict` loads with strict=True:
  EncoderDecoder
    backbone        HorNet segmentation variant: downsample_layers, stages (from hornet.py, unchanged), and
                    norm0..norm3 (channels-first LayerNorms, eps 1e-6) applied to each stage's output; no norm/head
    decode_head     UPerHead: conv_seg, dropout, psp_modules.{i}.{0: AdaptiveAvgPool2d, 1: ConvModule},
                    bottleneck, lateral_convs.{0,1,2}, fpn_convs.{0,1,2}, fpn_bottleneck
    auxiliary_head  FCNHead (num_convs 1, concat_input False): conv_seg, dropout, convs.0 (training only)
  ConvModule = conv (no bias) -> bn (BatchNorm2d, eps 1e-5, eval) -> ReLU, submodules `conv`, `bn`, `activate`.
Inference follows mmseg 0.x `EncoderDecoder`: encode_decode = backbone -> decode_head -> bilinear
(align_corners=False) resize of the logits to the input tensor's H x W; `whole` is encode_decode on the tensor,
`slide` runs it on crop windows and averages the logits per pixel. Every head resize is bilinear with
align_corners=False; only the GF filter resize inside the backbone uses align_corners=True.

Deterministic weights: hornet.py's recipe (FNV-1a + splitmix64, `hornet.recipe_tensor`), applied to the **full
mmseg keys** (`backbone.*`, `decode_head.*`, `auxiliary_head.*`), with ONE addition for BatchNorm (`recipe_tensor`
below): a key ending in `running_mean` gets 0 + 0.2*u (like `bias`) instead of the rank-1 default 1 + 0.25*u.
With running_mean ~ 1 the decode head is dead (every fpn_bottleneck ReLU output is 0, the logits are just
conv_seg.bias), so nothing after the lateral convs would be tested. running_var keeps 1 + 0.25*u (positive).
`num_batches_tracked` (0-d int64) is no recipe tensor (tensor(0) in checkpoint files). Inputs are
`hornet.recipe_input(shape)`.

Fixtures (Tests/SluiceModelsTests/Fixtures/upernet/, see its README.md): manifest.json, CASE.OUTPUT.npy, and
smallest_checkpoint.pth (a real mmseg container; its BN running_var * 1e-4 and bn.weight * 1e-2 so eps matters).

Run with Debian's interpreter, which has torch:
    /usr/bin/python3 scripts/reference/upernet.py                 # fixtures -> Tests/SluiceModelsTests/Fixtures/upernet
    /usr/bin/python3 scripts/reference/upernet.py export NAME OUT.pth
        NAME: upernet_hornet_{tiny,small,base,large}_{7x7,gf}; recipe weights in an mmseg container
        {'meta': {CLASSES, PALETTE, config, mmseg_version}, 'state_dict': ...}
    /usr/bin/python3 scripts/reference/upernet.py infer WEIGHTS IN.npy OUT.npy [--mode whole|slide]
        [--crop C | --crop H W] [--stride S | --stride H W] [--threads N] [--pool-scales 1 2 3 6] [--s 0.333..]
        WEIGHTS: an mmseg container ({'state_dict': ...}), {'model': ...} or a plain state dict; `module.` is
        stripped; the configuration is read from the tensor shapes. IN.npy: NCHW float32; OUT.npy: NCHW logits.
    /usr/bin/python3 scripts/reference/upernet.py bench NAME WEIGHTS THREADS HxW MODE SECONDS
        prints: torch <version> threads <T> size <H>x<W> mode <M>: median <X> ms over <N> runs
        (HxW is height x width, e.g. 512x512 or 512x2048; slide uses the official crop/stride of NAME)
    .work/venv-bench/bin/python scripts/reference/upernet.py bench-onnx NAME WEIGHTS THREADS HxW MODE SECONDS
        prints: onnxruntime <version> threads <T> size <H>x<W> mode <M>: median <X> ms over <N> runs (...)
        each window's encode_decode exported once to ONNX (torch >= 2.5 dynamo exporter, opset 18; cached in
        .work/bench/NAME-HxW.onnx) and run by onnxruntime; needs the venv of scripts/bench/setup-venv
        (`bench` runs under it too, with pip's torch 2.x)
    /usr/bin/python3 scripts/reference/upernet.py check-official PATH
        PATH: the official semantic_segmentation/models/hornet.py, or a git dir of raoyongming/HorNet;
        imports it with stand-ins for mmseg/mmcv_custom/timm and compares keys, shapes and outputs.
"""
import argparse
import collections
import io
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import types
from contextlib import redirect_stdout

if len(sys.argv) < 2 or sys.argv[1] == "cases":
    # Fixtures: one thread everywhere (torch and the BLAS it calls) so that a rerun is byte-identical.
    for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_var] = "1"
elif len(sys.argv) > 4 and sys.argv[1] in ("bench", "bench-onnx"):
    # The BLAS that nn.Linear calls has its own thread pool, read from the environment at load time.
    for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_var] = sys.argv[4]

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hornet  # noqa: E402  (the classification reference: module tree and recipe)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "Tests", "SluiceModelsTests", "Fixtures", "upernet")


# ----------------------------------------------------------------------------------------------
# Backbone: HorNet in segmentation mode (semantic_segmentation/models/hornet.py).

class HorNetSeg(nn.Module):
    """downsample_layers and stages exactly as hornet.py's HorNet builds them; then norm0..norm3
    (channels-first LayerNorm, eps 1e-6) on every stage output (out_indices [0, 1, 2, 3])."""

    def __init__(self, config):
        super().__init__()
        trunk = hornet.build(dict(config, num_classes=1))
        self.downsample_layers = trunk.downsample_layers
        self.stages = trunk.stages
        dims = [config["base_dim"] * 2 ** i for i in range(4)]
        for i in range(4):
            self.add_module("norm%d" % i, hornet.LayerNorm(dims[i], eps=1e-6, data_format="channels_first"))

    def forward(self, x):
        outs = []
        for i in range(4):
            x = self.downsample_layers[i](x)
            x = self.stages[i](x)
            outs.append(getattr(self, "norm%d" % i)(x))
        return tuple(outs)


# ----------------------------------------------------------------------------------------------
# Heads: mmcv ConvModule, mmseg UPerHead / FCNHead (0.x), plain PyTorch with the same attribute names.

def resize(x, size):
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


class ConvModule(nn.Module):
    def __init__(self, cin, cout, kernel, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, padding=padding, bias=False)   # bias='auto' with a norm
        self.bn = nn.BatchNorm2d(cout, eps=1e-5)                                 # SyncBN reverted to BN
        self.activate = nn.ReLU()

    def forward(self, x):
        return self.activate(self.bn(self.conv(x)))


class PPM(nn.ModuleList):
    """psp_modules: [AdaptiveAvgPool2d(s), ConvModule 1x1], each output resized back to the input size."""

    def __init__(self, pool_scales, cin, channels):
        super().__init__([nn.Sequential(nn.AdaptiveAvgPool2d(s), ConvModule(cin, channels, 1)) for s in pool_scales])

    def forward(self, x):
        return [resize(ppm(x), x.shape[2:]) for ppm in self]


class UPerHead(nn.Module):
    def __init__(self, in_channels, channels, pool_scales, num_classes):
        super().__init__()
        # BaseDecodeHead.__init__ creates these first (so the state_dict starts with conv_seg).
        self.conv_seg = nn.Conv2d(channels, num_classes, kernel_size=1)
        self.dropout = nn.Dropout2d(0.1)
        self.psp_modules = PPM(pool_scales, in_channels[-1], channels)
        self.bottleneck = ConvModule(in_channels[-1] + len(pool_scales) * channels, channels, 3, padding=1)
        self.lateral_convs = nn.ModuleList([ConvModule(c, channels, 1) for c in in_channels[:-1]])
        self.fpn_convs = nn.ModuleList([ConvModule(channels, channels, 3, padding=1) for _ in in_channels[:-1]])
        self.fpn_bottleneck = ConvModule(len(in_channels) * channels, channels, 3, padding=1)

    def psp_forward(self, inputs):
        x = inputs[-1]
        return self.bottleneck(torch.cat([x] + self.psp_modules(x), dim=1))   # x first

    def forward(self, inputs):
        laterals = [conv(inputs[i]) for i, conv in enumerate(self.lateral_convs)]
        laterals.append(self.psp_forward(inputs))
        for i in range(len(laterals) - 1, 0, -1):          # cumulative top-down sum
            laterals[i - 1] = laterals[i - 1] + resize(laterals[i], laterals[i - 1].shape[2:])
        fpn_outs = [self.fpn_convs[i](laterals[i]) for i in range(len(laterals) - 1)]
        fpn_outs.append(laterals[-1])                      # no fpn conv on the PSP level
        for i in range(len(fpn_outs) - 1, 0, -1):
            fpn_outs[i] = resize(fpn_outs[i], fpn_outs[0].shape[2:])
        output = self.fpn_bottleneck(torch.cat(fpn_outs, dim=1))
        return self.conv_seg(self.dropout(output))


class FCNHead(nn.Module):
    """The auxiliary head (in_index 2, num_convs 1, kernel 3, concat_input False); unused at inference."""

    def __init__(self, in_channels, channels, num_classes):
        super().__init__()
        self.conv_seg = nn.Conv2d(channels, num_classes, kernel_size=1)
        self.dropout = nn.Dropout2d(0.1)
        self.convs = nn.Sequential(ConvModule(in_channels, channels, 3, padding=1))

    def forward(self, inputs):
        return self.conv_seg(self.dropout(self.convs(inputs[2])))


class EncoderDecoder(nn.Module):
    def __init__(self, backbone, head):
        super().__init__()
        dims = [backbone["base_dim"] * 2 ** i for i in range(4)]
        self.backbone = HorNetSeg(backbone)
        self.decode_head = UPerHead(dims, head["channels"], tuple(head["pool_scales"]), head["num_classes"])
        if head.get("aux_channels"):
            self.auxiliary_head = FCNHead(dims[2], head["aux_channels"], head["num_classes"])

    def encode_decode(self, img):
        out = self.decode_head(self.backbone(img))
        return resize(out, img.shape[2:])

    def inference(self, img, mode="whole", crop=None, stride=None):
        if mode == "whole":
            return self.encode_decode(img)
        return self.slide(img, crop, stride)

    def slide(self, img, crop, stride):
        (h_crop, w_crop), (h_stride, w_stride) = crop, stride
        n, _, h_img, w_img = img.shape
        preds, count = None, img.new_zeros((n, 1, h_img, w_img))
        for y1, y2, x1, x2 in slide_windows(h_img, w_img, crop, stride):
            logits = self.encode_decode(img[:, :, y1:y2, x1:x2])
            if preds is None:
                preds = img.new_zeros((n, logits.shape[1], h_img, w_img))
            preds[:, :, y1:y2, x1:x2] += logits
            count[:, :, y1:y2, x1:x2] += 1
        assert (count == 0).sum() == 0
        return preds / count


def slide_windows(h_img, w_img, crop, stride):
    """mmseg 0.x slide_inference windows, as (y1, y2, x1, x2) in row-major grid order."""
    (h_crop, w_crop), (h_stride, w_stride) = crop, stride
    h_grids = max(h_img - h_crop + h_stride - 1, 0) // h_stride + 1
    w_grids = max(w_img - w_crop + w_stride - 1, 0) // w_stride + 1
    out = []
    for hi in range(h_grids):
        for wi in range(w_grids):
            y1, x1 = hi * h_stride, wi * w_stride
            y2, x2 = min(y1 + h_crop, h_img), min(x1 + w_crop, w_img)
            y1, x1 = max(y2 - h_crop, 0), max(x2 - w_crop, 0)
            out.append((y1, y2, x1, x2))
    return out


def build(backbone, head):
    return EncoderDecoder(backbone, head).eval()


# ----------------------------------------------------------------------------------------------
# Configurations, recipe weights, checkpoint containers.

def hornet_config(base_dim, gflayer, depths=(2, 3, 18, 2)):
    return {"base_dim": base_dim, "depths": list(depths), "orders": [2, 3, 4, 5], "gflayer": gflayer, "s": 1.0 / 3.0}


def official_config(name):
    """upernet_hornet_{tiny,small,base,large}_{7x7,gf}: (backbone, head, crop, stride) of the official configs."""
    size, kind = name[len("upernet_hornet_"):].split("_")
    base_dim = {"tiny": 64, "small": 96, "base": 128, "large": 192}[size]
    gf = [None, None, [24, 13], [12, 7]] if kind == "gf" else [None] * 4
    head = {"channels": 512, "pool_scales": [1, 2, 3, 6], "num_classes": 150, "aux_channels": 256}
    crop, stride = ((640, 640), (426, 426)) if size == "large" else ((512, 512), (341, 341))
    return hornet_config(base_dim, gf), head, crop, stride


def recipe_tensor(key, shape):
    """hornet.py's recipe, plus one rule for BatchNorm: `running_mean` gets 0 +- 0.2 (as `bias`) instead of the
    rank-1 default 1 +- 0.25. With running_mean near 1 every ConvModule subtracts ~1 from pre-activations of
    scale <= 1, and the decode head is dead (all ReLU outputs 0 from fpn_convs on, logits == conv_seg.bias)."""
    if key.split(".")[-1] == "running_mean":
        u = hornet.recipe_uniform(key, int(np.prod(shape)))
        return (0.0 + 0.2 * u).astype(np.float32).reshape(shape)
    return hornet.recipe_tensor(key, shape)


def recipe_state_dict(model):
    """The recipe on every float tensor of the full mmseg state_dict; num_batches_tracked stays tensor(0)."""
    out = collections.OrderedDict()
    for k, v in model.state_dict().items():
        if k.endswith("num_batches_tracked"):
            out[k] = torch.tensor(0, dtype=torch.long)
        else:
            out[k] = torch.from_numpy(recipe_tensor(k, tuple(v.shape)))
    return out


ADE_CLASSES = (
    'wall', 'building', 'sky', 'floor', 'tree', 'ceiling', 'road', 'bed ', 'windowpane', 'grass', 'cabinet',
    'sidewalk', 'person', 'earth', 'door', 'table', 'mountain', 'plant', 'curtain', 'chair', 'car', 'water',
    'painting', 'sofa', 'shelf', 'house', 'sea', 'mirror', 'rug', 'field', 'armchair', 'seat', 'fence', 'desk',
    'rock', 'wardrobe', 'lamp', 'bathtub', 'railing', 'cushion', 'base', 'box', 'column', 'signboard',
    'chest of drawers', 'counter', 'sand', 'sink', 'skyscraper', 'fireplace', 'refrigerator', 'grandstand', 'path',
    'stairs', 'runway', 'case', 'pool table', 'pillow', 'screen door', 'stairway', 'river', 'bridge', 'bookcase',
    'blind', 'coffee table', 'toilet', 'flower', 'book', 'hill', 'bench', 'countertop', 'stove', 'palm',
    'kitchen island', 'computer', 'swivel chair', 'boat', 'bar', 'arcade machine', 'hovel', 'bus', 'towel',
    'light', 'truck', 'tower', 'chandelier', 'awning', 'streetlight', 'booth', 'television receiver', 'airplane',
    'dirt track', 'apparel', 'pole', 'land', 'bannister', 'escalator', 'ottoman', 'bottle', 'buffet', 'poster',
    'stage', 'van', 'ship', 'fountain', 'conveyer belt', 'canopy', 'washer', 'plaything', 'swimming pool', 'stool',
    'barrel', 'basket', 'waterfall', 'tent', 'bag', 'minibike', 'cradle', 'oven', 'ball', 'food', 'step', 'tank',
    'trade name', 'microwave', 'pot', 'animal', 'bicycle', 'lake', 'dishwasher', 'screen', 'blanket', 'sculpture',
    'hood', 'sconce', 'vase', 'traffic light', 'tray', 'ashcan', 'fan', 'pier', 'crt screen', 'plate', 'monitor',
    'bulletin board', 'shower', 'radiator', 'glass', 'clock', 'flag')
ADE_PALETTE_HEX = """
787878 b47878 06e6e6 503232 04c803 787850 8c8c8c cc05ff e6e6e6 04fa07 e005ff ebff07 96053d 787846 08ff33 ff0652
8fff8c ccff04 ff3307 cc4603 0066c8 3de6fa ff0633 0b66ff ff0747 ff09e0 0907e6 dcdcdc ff095c 7009ff 08ffd6 07ffe0
ffb806 0aff47 ff290a 07ffff e0ff08 6608ff ff3d06 ffc207 ff7a08 00ff14 ff0829 ff0599 0633ff eb0cff a09614 00a3ff
8c8c8c fa0a0f 14ff00 1fff00 ff1f00 ffe000 99ff00 0000ff ff4700 00ebff 00adff 1f00ff 0bc8c8 ff5200 00fff5 003dff
00ff70 00ff85 ff0000 ffa300 ff6600 c2ff00 008fff 33ff00 0052ff 00ff29 00ffad 0a00ff adff00 00ff99 ff5c00 ff00ff
ff00f5 ff0066 ffad00 ff0014 ffb8b8 001fff 00ff3d 0047ff ff00cc 00ffc2 00ff52 000aff 0070ff 3300ff 00c2ff 007aff
00ffa3 ff9900 00ff0a ff7000 8fff00 5200ff a3ff00 ffeb00 08b8aa 8500ff 00ff5c b800ff ff001f 00b8ff 00d6ff ff0070
5cff00 00e0ff 70e0ff 46b8a0 a300ff 9900ff 47ff00 ff00a3 ffcc00 ff008f 00ffeb 85ff00 ff00eb f500ff ff007a fff500
0abed4 d6ff00 00ccff 1400ff ffff00 0099ff 0029ff 00ffcc 2900ff 29ff00 ad00ff 00f5ff 4700ff 7a00ff 00ffb8 005cff
b8ff00 0085ff ffd600 19c2c2 66ff00 5c00ff"""
ADE_PALETTE = [[int(h[i:i + 2], 16) for i in (0, 2, 4)] for h in ADE_PALETTE_HEX.split()]
assert len(ADE_CLASSES) == 150 and len(ADE_PALETTE) == 150


def config_text(backbone, head, crop=None, stride=None):
    """A short mmseg-style config, as meta['config'] holds the full one."""
    gn = []
    for order, gf in zip(backbone["orders"], backbone["gflayer"]):
        extra = "" if gf is None else ", h=%d, w=%d, gflayer=GlobalLocalFilter" % (gf[0], gf[1])
        gn.append("            'partial(gnconv, order=%d, s=1/3%s)'," % (order, extra))
    dims = [backbone["base_dim"] * 2 ** i for i in range(4)]
    test = "dict(mode='whole')" if crop is None else \
        "dict(mode='slide', crop_size=(%d, %d), stride=(%d, %d))" % (tuple(crop) + tuple(stride))
    return "\n".join([
        "norm_cfg = dict(type='SyncBN', requires_grad=True)",
        "model = dict(",
        "    type='EncoderDecoder',",
        "    pretrained=None,",
        "    backbone=dict(",
        "        type='HorNet',",
        "        depths=%s," % backbone["depths"],
        "        base_dim=%d," % backbone["base_dim"],
        "        block='Block',",
        "        gnconv=["] + gn + [
        "        ],",
        "        out_indices=[0, 1, 2, 3]),",
        "    decode_head=dict(type='UPerHead', in_channels=%s, in_index=[0, 1, 2, 3], pool_scales=%s," % (
            dims, tuple(head["pool_scales"])),
        "        channels=%d, dropout_ratio=0.1, num_classes=%d, norm_cfg=norm_cfg, align_corners=False)," % (
            head["channels"], head["num_classes"]),
        "    auxiliary_head=dict(type='FCNHead', in_channels=%d, in_index=2, channels=%d, num_convs=1," % (
            dims[2], head["aux_channels"]),
        "        concat_input=False, dropout_ratio=0.1, num_classes=%d, norm_cfg=norm_cfg, align_corners=False)," % (
            head["num_classes"]),
        "    train_cfg=dict(),",
        "    test_cfg=%s)" % test,
        ""])


def container(state_dict, classes, palette, text, optimizer=None):
    out = {"meta": {"mmseg_version": "0.30.0", "config": text, "CLASSES": tuple(classes),
                    "PALETTE": [list(p) for p in palette]},
           "state_dict": collections.OrderedDict(state_dict)}
    if optimizer is not None:
        out["optimizer"] = optimizer
    return out


def load_weights(path):
    """An mmseg container, a {'model': ...} wrapper or a plain state dict; `module.` stripped (as mmcv does)."""
    obj = torch.load(path, map_location="cpu")
    if isinstance(obj, dict) and "state_dict" in obj:
        obj = obj["state_dict"]
    elif isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        obj = obj["model"]
    return collections.OrderedDict((k[len("module."):] if k.startswith("module.") else k, v) for k, v in obj.items())


def config_from_state_dict(sd, pool_scales=(1, 2, 3, 6), s=1.0 / 3.0):
    """Backbone and head configuration read from tensor shapes (pool scale values and s are not stored)."""
    base_dim = sd["backbone.downsample_layers.0.0.weight"].shape[0]
    depths, orders, gflayer = [], [], []
    for i in range(4):
        blocks = {int(k.split(".")[3]) for k in sd if k.startswith("backbone.stages.%d." % i)}
        depths.append(len(blocks))
        orders.append(1 + len({k.split(".")[6] for k in sd if k.startswith("backbone.stages.%d.0.gnconv.pws." % i)}))
        cw = sd.get("backbone.stages.%d.0.gnconv.dwconv.complex_weight" % i)
        gflayer.append(None if cw is None else [int(cw.shape[1]), int(cw.shape[2])])
    n_ppm = len({k.split(".")[2] for k in sd if k.startswith("decode_head.psp_modules.")})
    assert n_ppm == len(pool_scales), "state dict has %d PPM branches; pass --pool-scales" % n_ppm
    aux = sd.get("auxiliary_head.convs.0.conv.weight")
    head = {"channels": int(sd["decode_head.conv_seg.weight"].shape[1]), "pool_scales": list(pool_scales),
            "num_classes": int(sd["decode_head.conv_seg.weight"].shape[0]),
            "aux_channels": 0 if aux is None else int(aux.shape[0])}
    return {"base_dim": int(base_dim), "depths": depths, "orders": orders, "gflayer": gflayer, "s": s}, head


# ----------------------------------------------------------------------------------------------
# Fixtures.

REDUCED = hornet_config(16, [None] * 4, depths=(1, 1, 2, 1))
REDUCED_GF = hornet_config(16, [None, None, [6, 4], [3, 3]], depths=(1, 1, 2, 1))
REDUCED_HEAD = {"channels": 32, "pool_scales": [1, 2, 3, 6], "num_classes": 11, "aux_channels": 16}
SMALLEST = hornet_config(8, [None, None, None, [2, 2]], depths=(1, 1, 1, 1))
SMALLEST_HEAD = {"channels": 16, "pool_scales": [1, 2, 3, 6], "num_classes": 5, "aux_channels": 8}
SMALLEST_CLASSES = ("sky", "tree", "road", "bed ", "person")
SMALLEST_PALETTE = [[6, 230, 230], [4, 200, 3], [140, 140, 140], [204, 5, 255], [150, 5, 61]]
SUBSAMPLE_FULL = 8     # full-size cases keep logits[:, :, ::8, ::8] (folder size)

TINY_7X7 = official_config("upernet_hornet_tiny_7x7")
TINY_GF = official_config("upernet_hornet_tiny_gf")

# name, backbone, head, input NCHW, mode, crop, stride, weights, subsample
CASES = [
    ("reduced_7x7_whole", REDUCED, REDUCED_HEAD, [1, 3, 64, 64], "whole", None, None, "recipe", 1),
    # 72x100: 18x25 -> 9x12 -> 4x6 -> 2x3, the strided convs floor; PPM bins overlap / repeat.
    ("reduced_7x7_whole_odd", REDUCED, REDUCED_HEAD, [1, 3, 72, 100], "whole", None, None, "recipe", 1),
    # 96x136: stage 2 is 6x8 (rFFT 6x5, filter 6x4 resized), stage 3 is 3x4 (rFFT 3x3 = stored 3x3: no resize).
    ("reduced_gf_whole", REDUCED_GF, REDUCED_HEAD, [1, 3, 96, 136], "whole", None, None, "recipe", 1),
    # 2x5 windows of 64x64, the last row and column shifted back; stage grids 4x3 / 2x2 vs 6x4 / 3x3.
    ("reduced_gf_slide", REDUCED_GF, REDUCED_HEAD, [1, 3, 96, 200], "slide", [64, 64], [43, 43], "recipe", 1),
    # 48 < crop 64: 1x3 windows of 48x64; stage 3 is 1x2.
    ("reduced_7x7_slide_short", REDUCED, REDUCED_HEAD, [1, 3, 48, 150], "slide", [64, 64], [43, 43], "recipe", 1),
    # A real mmseg container file; recipe weights with BN running_var * 1e-4 and bn.weight * 1e-2 (eps matters).
    ("smallest_checkpoint", SMALLEST, SMALLEST_HEAD, [1, 3, 64, 64], "whole", None, None,
     "smallest_checkpoint.pth", 1),
    ("full_tiny_7x7_whole", TINY_7X7[0], TINY_7X7[1], [1, 3, 128, 192], "whole", None, None, "recipe",
     SUBSAMPLE_FULL),
    ("full_tiny_gf_whole", TINY_GF[0], TINY_GF[1], [1, 3, 128, 192], "whole", None, None, "recipe", SUBSAMPLE_FULL),
    # 1x4 windows of 128x128 at x = 0, 85, 170, 172.
    ("full_tiny_gf_slide", TINY_GF[0], TINY_GF[1], [1, 3, 128, 300], "slide", [128, 128], [85, 85], "recipe",
     SUBSAMPLE_FULL),
]


NOTES = {
    "reduced_7x7_whole_odd": "72x100: stages 18x25, 9x12, 4x6, 2x3 (strided convs floor); PPM bins overlap/repeat",
    "reduced_gf_whole": "stage 2 is 6x8 (rFFT 6x5): filter 6x4 resized; stage 3 is 3x4 (rFFT 3x3): filter 3x3 used as is",
    "reduced_gf_slide": "2x5 windows of 64x64; last row/column shifted back (y1 32, x1 136); filters resized to 4x3 and 2x2",
    "reduced_7x7_slide_short": "image height 48 < crop 64: windows 48x64; stage 3 is 1x2",
    "smallest_checkpoint": "mmseg container {'meta','state_dict','optimizer'}; recipe weights, then every BN "
                           "running_var * 1e-4 and bn.weight * 1e-2 (so BN eps 1e-5 changes logits by ~16%)",
    "full_tiny_gf_slide": "1x4 windows of 128x128 at x = 0, 85, 170, 172; filters 24x13 -> 8x5, 12x7 -> 4x3",
    "full_tiny_gf_whole": "filters 24x13 -> 8x7 and 12x7 -> 4x4",
}


def weights_for_case(name, model, weights):
    """The state dict a case runs on; for file cases, written as an mmseg container and loaded back."""
    sd = recipe_state_dict(model)
    if weights == "recipe":
        return sd
    if name == "smallest_checkpoint":
        # BN running_var * 1e-4 and weight * 1e-2 keep gamma / sqrt(var) about as it was, but make eps 1e-5
        # ~10% of var, so this case catches a wrong or missing BN eps (the recipe's var ~1 hides it).
        for k in sd:
            if k.endswith("running_var"):
                sd[k] = sd[k] * np.float32(1e-4)
            elif k.endswith(".bn.weight"):
                sd[k] = sd[k] * np.float32(1e-2)
    backbone, head = config_from_state_dict(sd)
    optimizer = {"state": {}, "param_groups": [{"lr": 0.0001, "params": [0, 1]}]}
    path = os.path.join(OUT, weights)
    torch.save(container(sd, SMALLEST_CLASSES, SMALLEST_PALETTE, config_text(backbone, head), optimizer), path)
    back = torch.load(path, map_location="cpu")
    assert set(back) == {"meta", "state_dict", "optimizer"}
    return back["state_dict"]


def rel_change(a, b):
    return (a - b).abs().max().item() / b.abs().max().item()


def sensitivity(model, x, mode, crop, stride, logits):
    """Relative max change of the logits when (a) the last backbone block's gamma1 is zeroed, (b) every BN eps
    is 0 instead of 1e-5, (c) the decode head's fpn_bottleneck BN eps is 0."""
    out = {}
    with torch.no_grad():
        last = model.backbone.stages[3][-1]
        saved = last.gamma1.data.clone()
        last.gamma1.data.zero_()
        out["gamma1_last_zero"] = rel_change(model.inference(x, mode, crop, stride), logits)
        last.gamma1.data.copy_(saved)
        bns = [m for m in model.decode_head.modules() if isinstance(m, nn.BatchNorm2d)]
        for m in bns:
            m.eps = 0.0
        out["all_bn_eps_0"] = rel_change(model.inference(x, mode, crop, stride), logits)
        for m in bns:
            m.eps = 1e-5
        model.decode_head.fpn_bottleneck.bn.eps = 0.0
        out["fpn_bottleneck_bn_eps_0"] = rel_change(model.inference(x, mode, crop, stride), logits)
        model.decode_head.fpn_bottleneck.bn.eps = 1e-5
    return out


def relu_activity(model, x):
    """Fraction of positive outputs of the decode head's last ConvModule (a dead head would hide bugs)."""
    seen = {}

    def record(module, inputs, output):
        seen["f"] = (output > 0).float().mean().item()

    hook = model.decode_head.fpn_bottleneck.register_forward_hook(record)
    with torch.no_grad():
        model.encode_decode(x[:, :, :64, :64] if x.shape[2] > 64 else x)
    hook.remove()
    return seen["f"]


def write_fixtures(only=None):
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    torch.set_num_threads(1)     # byte-reproducible fixtures (more threads change the last bits)
    cases = []
    for name, backbone, head, shape, mode, crop, stride, weights, sub in CASES:
        if only and name not in only:
            continue
        start = time.perf_counter()
        model = build(backbone, head)
        sd = weights_for_case(name, model, weights)
        model.load_state_dict(sd, strict=True)
        x = hornet.recipe_input(shape)
        outputs = {}
        with torch.no_grad():
            logits = model.inference(x, mode, crop, stride)
            assert tuple(logits.shape) == (shape[0], head["num_classes"], shape[2], shape[3])
            if sub > 1:
                outputs["logits_sub%d" % sub] = logits[:, :, ::sub, ::sub]
            else:
                outputs["logits"] = logits
                if mode == "whole":
                    features = model.backbone(x)
                    for i, f in enumerate(features):
                        outputs["features.%d" % i] = f
                    head_out = model.decode_head(features)
                    outputs["head"] = head_out
                    assert torch.equal(resize(head_out, x.shape[2:]), logits)
        elapsed = time.perf_counter() - start
        files = {}
        for key, value in outputs.items():
            files[key] = "%s.%s.npy" % (name, key)
            np.save(os.path.join(OUT, files[key]), np.ascontiguousarray(value.numpy().astype(np.float32)))
        sens = sensitivity(model, x, mode, crop, stride, logits)
        active = relu_activity(model, x)
        classes = torch.unique(logits.argmax(1)).numel()
        entry = {"name": name, "backbone": backbone, "head": head, "input_shape": shape, "mode": mode}
        if mode == "slide":
            entry["crop"], entry["stride"] = list(crop), list(stride)
            entry["windows"] = [list(w) for w in slide_windows(shape[2], shape[3], crop, stride)]
        entry["weights"] = weights
        if name in NOTES:
            entry["note"] = NOTES[name]
        if sub > 1:
            entry["subsample"] = sub
        entry["outputs"] = files
        entry["parameters"] = sum(v.numel() for k, v in sd.items()
                                  if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))
        entry["logits_std"] = round(logits.std().item(), 6)
        entry["logits_absmax"] = round(logits.abs().max().item(), 6)
        cases.append(entry)
        print("%-27s %-14s logits std %.3f max %.3f, %d argmax classes, fpn_bottleneck ReLU active %.2f | "
              "relative change: last gamma1=0 %.3g, all head BN eps 0 %.3g, fpn_bottleneck BN eps 0 %.3g | %.2fs"
              % (name, "x".join(map(str, shape[2:])) + " " + mode, logits.std().item(), logits.abs().max().item(),
                 classes, active, sens["gamma1_last_zero"], sens["all_bn_eps_0"], sens["fpn_bottleneck_bn_eps_0"],
                 elapsed), flush=True)
    if only:
        return
    manifest = {
        "generator": "scripts/reference/upernet.py",
        "torch": torch.__version__, "numpy": np.__version__,
        "seed": "recipe (FNV-1a/splitmix64, see hornet.py)",
        "recipe_keys": "full mmseg state_dict keys (backbone.*, decode_head.*, auxiliary_head.*); "
                       "num_batches_tracked is no recipe tensor",
        "recipe_running_mean": "keys ending in running_mean: 0 + 0.2*u (not the rank-1 default 1 + 0.25*u)",
        "input": "hornet.recipe_input(input_shape), key 'input'",
        "windows": "slide cases: mmseg 0.x windows as [y1, y2, x1, x2], row-major",
        "outputs": "float32 NCHW .npy: logits at the input size; features.i = backbone output i after norm_i; "
                   "head = decode_head output before the final resize; logits_subN = logits[:, :, ::N, ::N]",
        "cases": cases,
    }
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")


# ----------------------------------------------------------------------------------------------
# Subcommands.

def export(name, path):
    backbone, head, crop, stride = official_config(name)
    model = build(backbone, head)
    sd = recipe_state_dict(model)
    model.load_state_dict(sd, strict=True)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    torch.save(container(sd, ADE_CLASSES, ADE_PALETTE, config_text(backbone, head, crop, stride)), path)
    n = sum(v.numel() for k, v in sd.items() if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))
    print("wrote %s (%d tensors, %d parameters)" % (path, len(sd), n))


def parse_pair(values):
    return (values[0], values[0]) if len(values) == 1 else (values[0], values[1])


def infer(argv):
    p = argparse.ArgumentParser(prog="upernet.py infer")
    p.add_argument("weights")
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--mode", choices=["whole", "slide"], default="whole")
    p.add_argument("--crop", type=int, nargs="+", default=[512])
    p.add_argument("--stride", type=int, nargs="+", default=[341])
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--pool-scales", type=int, nargs="+", default=[1, 2, 3, 6])
    p.add_argument("--s", type=float, default=1.0 / 3.0)
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    sd = load_weights(a.weights)
    backbone, head = config_from_state_dict(sd, a.pool_scales, a.s)
    model = build(backbone, head)
    model.load_state_dict(sd, strict=True)
    x = torch.from_numpy(np.ascontiguousarray(np.load(a.input), dtype=np.float32))
    with torch.no_grad():
        logits = model.inference(x, a.mode, parse_pair(a.crop), parse_pair(a.stride))
    np.save(a.output, logits.numpy().astype(np.float32))
    print("wrote %s %s" % (a.output, tuple(logits.shape)))


def bench_model(name, weights):
    """The official model NAME with WEIGHTS loaded strictly (no auxiliary head if the file has none), and its
    slide crop and stride."""
    backbone, head, crop, stride = official_config(name)
    sd = load_weights(weights)
    if not any(k.startswith("auxiliary_head.") for k in sd):
        head = dict(head, aux_channels=0)
    model = build(backbone, head)
    model.load_state_dict(sd, strict=True)
    return model, crop, stride


def bench(name, weights, threads, size, mode, seconds):
    torch.set_num_threads(threads)
    h, w = (int(v) for v in size.lower().split("x"))
    model, crop, stride = bench_model(name, weights)
    x = hornet.recipe_input([1, 3, h, w])
    times = []
    with torch.no_grad():
        model.inference(x, mode, crop, stride)          # warm-up
        start = time.perf_counter()
        while len(times) < 3 or time.perf_counter() - start < seconds:
            t0 = time.perf_counter()
            model.inference(x, mode, crop, stride)
            times.append(time.perf_counter() - t0)
    print("torch %s threads %d size %dx%d mode %s: median %.1f ms over %d runs"
          % (torch.__version__, threads, h, w, mode, 1000 * float(np.median(times)), len(times)), flush=True)


def bench_onnx(name, weights, threads, size, mode, seconds):
    """As `bench`, with each window's encode_decode (backbone, decode head, resize to the window) exported to
    ONNX once and run by onnxruntime (intra-op threads THREADS, inter-op 1, sequential); the slide driver is
    numpy. The export is static-shaped (the GF filters are resized to each stage's grid at trace time), cached
    as .work/bench/NAME-HxW.onnx (+ .onnx.data) for the window size, and redone when WEIGHTS is newer.
    Needs torch >= 2.5 (the torch.export-based exporter, `dynamo=True`, onnxscript) and onnxruntime:
    scripts/bench/setup-venv, then .work/venv-bench/bin/python. The legacy TorchScript exporter
    (dynamo=False, any opset, and torch 1.13's) rejects the GF variants: "Exporting the operator
    'aten::fft_rfft2' to ONNX opset version 17 is not supported"; the dynamo exporter (opset 18) maps
    torch.fft.rfft2/irfft2 to ONNX DFT (opset >= 17), so 7x7 and GF both export."""
    try:
        import onnxruntime as ort
    except ImportError:
        sys.exit("bench-onnx: onnxruntime is not installed for %s; run scripts/bench/setup-venv and use "
                 ".work/venv-bench/bin/python" % sys.executable)
    if "dynamo" not in torch.onnx.export.__code__.co_varnames:
        sys.exit("bench-onnx: torch %s has no torch.export-based ONNX exporter (torch.onnx.export(dynamo=True), "
                 "torch >= 2.5); use .work/venv-bench/bin/python" % torch.__version__)
    torch.set_num_threads(threads)
    h, w = (int(v) for v in size.lower().split("x"))
    model, crop, stride = bench_model(name, weights)
    windows = slide_windows(h, w, crop, stride) if mode == "slide" else [(0, h, 0, w)]
    wh, ww = windows[0][1] - windows[0][0], windows[0][3] - windows[0][2]
    cache = os.path.join(ROOT, ".work", "bench")
    base = "%s-%dx%d.onnx" % (name, wh, ww)
    path = os.path.join(cache, base)
    if not os.path.exists(path) or os.path.getmtime(path) < os.path.getmtime(weights):
        class Window(nn.Module):
            def __init__(self, m):
                super().__init__()
                self.m = m

            def forward(self, x):
                return self.m.encode_decode(x)
        os.makedirs(cache, exist_ok=True)
        start = time.perf_counter()
        # Exported into a scratch folder, then moved (data file first): the .onnx names its external data
        # file by base name, and a killed export leaves no half-written cache entry.
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            try:
                with torch.no_grad(), redirect_stdout(sys.stderr):      # the exporter's progress lines
                    torch.onnx.export(Window(model), (torch.zeros(1, 3, wh, ww),), os.path.join(tmp, base),
                                      opset_version=18, dynamo=True, input_names=["x"], output_names=["logits"])
            except Exception as e:
                sys.exit("bench-onnx: torch %s could not export %s (%dx%d window) to ONNX opset 18 with the "
                         "dynamo exporter: %s: %s" % (torch.__version__, name, wh, ww, type(e).__name__,
                                                      str(e).strip().splitlines()[0] if str(e).strip() else ""))
            for f in sorted(os.listdir(tmp), key=lambda f: f == base):
                os.replace(os.path.join(tmp, f), os.path.join(cache, f))
        print("exported %s in %.0f s" % (path, time.perf_counter() - start), file=sys.stderr, flush=True)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    x = hornet.recipe_input([1, 3, h, w]).numpy()

    def window(y1, y2, x1, x2):
        return session.run(None, {"x": np.ascontiguousarray(x[:, :, y1:y2, x1:x2])})[0]

    def run():
        preds, count = None, np.zeros((1, 1, h, w), np.float32)
        for y1, y2, x1, x2 in windows:
            logits = window(y1, y2, x1, x2)
            if preds is None:
                preds = np.zeros((1, logits.shape[1], h, w), np.float32)
            preds[:, :, y1:y2, x1:x2] += logits
            count[:, :, y1:y2, x1:x2] += 1
        return preds / count
    # Check (and warm up) on the first window: onnxruntime's logits against torch's encode_decode.
    y1, y2, x1, x2 = windows[0]
    with torch.no_grad():
        expected = model.encode_decode(torch.from_numpy(np.ascontiguousarray(x[:, :, y1:y2, x1:x2]))).numpy()
    got = window(y1, y2, x1, x2)
    error = float(np.abs(got - expected).max() / np.abs(expected).max())
    if not error < 1e-3:
        sys.exit("bench-onnx: onnxruntime's logits differ from torch's by %.2e (relative to max |logit|); a stale "
                 "%s? delete it and rerun" % (error, path))
    run()                                               # warm-up of the whole driver
    times = []
    start = time.perf_counter()
    while len(times) < 3 or time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    print("onnxruntime %s threads %d size %dx%d mode %s: median %.1f ms over %d runs (window logits vs torch: "
          "max relative error %.1e)" % (ort.__version__, threads, h, w, mode, 1000 * float(np.median(times)),
                                         len(times), error), flush=True)


def check_official(path):
    """Import the official segmentation hornet.py with stand-ins and compare it to HorNetSeg."""
    if os.path.isdir(path):
        source = subprocess.run(["git", "--git-dir", path, "show", "HEAD:semantic_segmentation/models/hornet.py"],
                                check=True, capture_output=True, text=True).stdout
        rev = subprocess.run(["git", "--git-dir", path, "rev-parse", "HEAD"], check=True, capture_output=True,
                             text=True).stdout.strip()
    else:
        source, rev = open(path).read(), path
    stub = {}

    def module(name, **attrs):
        m = types.ModuleType(name)
        for k, v in attrs.items():
            setattr(m, k, v)
        sys.modules.setdefault(name, m)
        stub[name] = m
        return m

    class Registry:
        def register_module(self, *args, **kwargs):
            return (lambda cls: cls) if not args else args[0]

    class DropPath(nn.Module):              # identity at eval (drop_path_rate is 0 here anyway)
        def __init__(self, p=0.0):
            super().__init__()

        def forward(self, x):
            return x

    module("mmseg")
    module("mmseg.utils", get_root_logger=lambda *a, **k: None)
    module("mmseg.models")
    module("mmseg.models.builder", BACKBONES=Registry())
    module("mmcv_custom", load_checkpoint=lambda *a, **k: None)
    try:
        import timm.models.layers  # noqa: F401
    except ImportError:
        module("timm")
        module("timm.models")
        module("timm.models.layers", trunc_normal_=lambda t, std=1.0, **k: nn.init.trunc_normal_(t, std=std),
               DropPath=DropPath)
        module("timm.models.registry", register_model=lambda f: f)
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "official_seg_hornet.py"), "w") as f:
            f.write(source)
        sys.path.insert(0, tmp)
        with redirect_stdout(io.StringIO()):
            import official_seg_hornet as official
        sys.path.remove(tmp)
    print("official semantic_segmentation/models/hornet.py @ %s" % rev)
    for label, backbone, shape in [("reduced 7x7", REDUCED, [1, 3, 72, 100]),
                                   ("reduced GF", REDUCED_GF, [1, 3, 96, 136]),
                                   ("tiny GF (full)", TINY_GF[0], [1, 3, 128, 192]),
                                   ("tiny 7x7 (full)", TINY_7X7[0], [1, 3, 128, 192])]:
        gnconv = []
        for order, gf in zip(backbone["orders"], backbone["gflayer"]):
            extra = "" if gf is None else ", h=%d, w=%d, gflayer=GlobalLocalFilter" % (gf[0], gf[1])
            gnconv.append("partial(gnconv, order=%d, s=1/3%s)" % (order, extra))
        with redirect_stdout(io.StringIO()):
            ref = official.HorNet(depths=backbone["depths"], base_dim=backbone["base_dim"], block="Block",
                                  gnconv=gnconv, out_indices=[0, 1, 2, 3], drop_path_rate=0.0).eval()
        ours = HorNetSeg(backbone).eval()
        ref_shapes = [("backbone." + k, tuple(v.shape)) for k, v in ref.state_dict().items()]
        our_shapes = [("backbone." + k, tuple(v.shape)) for k, v in ours.state_dict().items()]
        same_keys = ref_shapes == our_shapes
        full = build(backbone, {"channels": 32, "pool_scales": [1, 2, 3, 6], "num_classes": 11, "aux_channels": 16})
        sd = recipe_state_dict(full)
        bsd = {k[len("backbone."):]: v for k, v in sd.items() if k.startswith("backbone.")}
        ref.load_state_dict(bsd, strict=True)
        ours.load_state_dict(bsd, strict=True)
        x = hornet.recipe_input(shape)
        with torch.no_grad():
            a, b = ref(x), ours(x)
        diffs = [(p - q).abs().max().item() for p, q in zip(a, b)]
        print("%-16s input %s: %d keys, keys/shapes/order identical: %s; outputs %s; max abs diff per stage %s"
              % (label, "x".join(map(str, shape[2:])), len(ref_shapes), same_keys,
                 [tuple(t.shape) for t in a], ["%.3g" % d for d in diffs]))
        assert same_keys and max(diffs) == 0.0
    for name in stub:
        sys.modules.pop(name, None)


if __name__ == "__main__":
    args = sys.argv[1:]
    if args and args[0] == "export":
        export(args[1], args[2])
    elif args and args[0] == "infer":
        infer(args[1:])
    elif args and args[0] == "bench":
        bench(args[1], args[2], int(args[3]), args[4], args[5], float(args[6]))
    elif args and args[0] == "bench-onnx":
        bench_onnx(args[1], args[2], int(args[3]), args[4], args[5], float(args[6]))
    elif args and args[0] == "check-official":
        check_official(args[1])
    elif args and args[0] == "cases":
        write_fixtures(only=set(args[1:]))
    else:
        write_fixtures()
