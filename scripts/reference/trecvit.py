#!/usr/bin/env python3
"""PyTorch reference for TRecViT (google-deepmind/trecvit, Apache-2.0), written from the official
`trecvit/modules.py` and the recurrentgemma JAX modules it imports (`ResidualBlock` with
`use_mlp=False`, `RecurrentBlock`, `Conv1D`, `RGLRU` with `only_real=True`, `BlockDiagonalLinear`,
`RMSNorm`).

Parameters live in a flat dict keyed exactly as the official `.npz` ('/'-joined Flax paths, Flax
layouts: Dense kernels [in, out], the tokenizer's Conv kernel THWIO [1, 16, 16, 3, width], attention
query/key/value kernels [width, heads, head_dim] and out kernel [heads, head_dim, width]), so
`np.load("trecvit_B_k400.npz")` runs here unchanged:

    tokenizer/embedding/{kernel,bias}  tokenizer/pos_embedding  tokenizer/cls
    encoder/residualblock_{i:02d}/temporal_pre_norm/scale
    encoder/residualblock_{i:02d}/recurrent_block/{linear_x,linear_y,linear_out}/{kernel,bias}
    encoder/residualblock_{i:02d}/recurrent_block/conv_1d/{w,b}
    encoder/residualblock_{i:02d}/recurrent_block/rg_lru/{a_param,input_gate/{w,b},a_gate/{w,b}}
    encoder/encoderblock_{i}/{LayerNorm_0,LayerNorm_1}/{scale,bias}
    encoder/encoderblock_{i}/MultiHeadDotProductAttention_0/{query,key,value,out}/{kernel,bias}
    encoder/encoderblock_{i}/MlpBlock_0/{Dense_0,Dense_1}/{kernel,bias}
    encoder/encoder_norm/{scale,bias}
    decoder/pre_logits/{kernel,bias}  decoder/cls_head/{kernel,bias}

The forward is the official one, vectorised over time as the official code runs it: clips of
`frames_per_clip` (num_clips = max(T // frames_per_clip, 1), each of T / num_clips frames), tokens
[b, t, 1 + h*w, width]; per layer the RG-LRU block over each token's time series (segment_pos 0..t-1,
so the conv and the recurrence restart at each clip) then a ViT block over each frame's tokens; the
decoder averages tanh(pre_logits(cls)) over each clip's frames, applies cls_head, and averages logits
(and probs) over clips. GELU is the tanh approximation (jax.nn.gelu's default, which Flax's nn.gelu
is); LayerNorm eps 1e-6; RMSNorm x * rsqrt(mean(x^2) + 1e-6) * (1 + scale).

`streaming_logits` is what a causal reading gives at every frame: cls_head of the mean of
tanh(pre_logits(cls)) over the clip's frames so far. The encoder is causal in time, so this is the
official forward's own intermediate output, not a second implementation.

Deterministic weights: the same splitmix64 recipe as hornet.py (FNV-1a 64 of the key, then the
finaliser), with offsets and scales chosen per Flax leaf (`recipe_offset_scale`). The Swift tests
(`TRecViTRecipe`) rebuild the same weights, so only inputs' recipes and outputs are committed.

Writes into Tests/SluiceModelsTests/Fixtures/trecvit/:
  manifest.json             every case: configuration, video shape, frames_per_clip, files
  CASE.logits.npy           [b, classes] clip-averaged logits (the official `logits`)
  CASE.streaming.npy        [b, t, classes] per-frame logits of the clip so far
  CASE.clips.npy            [b, clips, classes] each clip's logits
  reduced_checkpoint.npz    the reduced configuration's recipe weights as an official-format .npz

Run with Debian's interpreter, which has torch:
    /usr/bin/python3 scripts/reference/trecvit.py                      # fixtures
    /usr/bin/python3 scripts/reference/trecvit.py export VARIANT OUT.npz  # recipe weights, official keys
    /usr/bin/python3 scripts/reference/trecvit.py bench VARIANT WEIGHTS.npz THREADS FRAMES [SECONDS]
    .work/venv-bench/bin/python scripts/reference/trecvit.py bench-onnx VARIANT WEIGHTS.npz THREADS FRAMES [SECONDS]
(`bench-onnx` needs onnxruntime: scripts/bench/setup-venv makes .work/venv-bench.)
"""
import json
import math
import os
import sys
import tempfile
import time
import warnings
from contextlib import redirect_stdout

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hornet import RECIPE_SEED, recipe_uniform  # noqa: E402  (the shared splitmix64 recipe)

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "Tests", "SluiceModelsTests",
                   "Fixtures", "trecvit")

# trecvit/utils.py decode_variant; get_model's aux settings (conv width 4, state_multiplier 2, rep 3072).
VARIANTS = {
    "mu": dict(width=32, depth=1, mlp_dim=128, num_heads=2),
    "Ti": dict(width=192, depth=12, mlp_dim=768, num_heads=3),
    "S": dict(width=384, depth=12, mlp_dim=1536, num_heads=6),
    "M": dict(width=512, depth=12, mlp_dim=2048, num_heads=8),
    "B": dict(width=768, depth=12, mlp_dim=3072, num_heads=12),
    "L": dict(width=1024, depth=24, mlp_dim=4096, num_heads=16),
}


def official_config(variant, num_classes=400, image=224):
    v = VARIANTS[variant]
    return dict(v, lru_width=2 * v["width"], conv_width=4, rep_size=3072, num_classes=num_classes, patch=16,
                grid=[image // 16, image // 16])


# A reduced configuration: every module, small sizes, a non-square 2x3 patch grid.
REDUCED = dict(width=32, depth=2, mlp_dim=64, num_heads=2, lru_width=64, conv_width=4, rep_size=48,
               num_classes=10, patch=16, grid=[2, 3])


def parameter_shapes(c):
    """(key, shape) in the official tree, tokenizer → encoder → decoder."""
    w, lw, p, hd = c["width"], c["lru_width"], c["patch"], c["width"] // c["num_heads"]
    heads = c["num_heads"]
    out = [("tokenizer/embedding/kernel", [1, p, p, 3, w]), ("tokenizer/embedding/bias", [w]),
           ("tokenizer/pos_embedding", [1, c["grid"][0] * c["grid"][1], w]), ("tokenizer/cls", [1, 1, w])]
    for i in range(c["depth"]):
        r = "encoder/residualblock_%02d/" % i
        out += [(r + "temporal_pre_norm/scale", [w])]
        rb = r + "recurrent_block/"
        out += [(rb + "linear_y/kernel", [w, lw]), (rb + "linear_y/bias", [lw]),
                (rb + "linear_x/kernel", [w, lw]), (rb + "linear_x/bias", [lw]),
                (rb + "linear_out/kernel", [lw, w]), (rb + "linear_out/bias", [w]),
                (rb + "conv_1d/w", [c["conv_width"], lw]), (rb + "conv_1d/b", [lw]),
                (rb + "rg_lru/a_param", [lw]),
                (rb + "rg_lru/input_gate/w", [heads, lw // heads, lw // heads]),
                (rb + "rg_lru/input_gate/b", [heads, lw // heads]),
                (rb + "rg_lru/a_gate/w", [heads, lw // heads, lw // heads]),
                (rb + "rg_lru/a_gate/b", [heads, lw // heads])]
        e = "encoder/encoderblock_%d/" % i
        out += [(e + "LayerNorm_0/scale", [w]), (e + "LayerNorm_0/bias", [w])]
        for name in ("query", "key", "value"):
            out += [(e + "MultiHeadDotProductAttention_0/%s/kernel" % name, [w, heads, hd]),
                    (e + "MultiHeadDotProductAttention_0/%s/bias" % name, [heads, hd])]
        out += [(e + "MultiHeadDotProductAttention_0/out/kernel", [heads, hd, w]),
                (e + "MultiHeadDotProductAttention_0/out/bias", [w]),
                (e + "LayerNorm_1/scale", [w]), (e + "LayerNorm_1/bias", [w]),
                (e + "MlpBlock_0/Dense_0/kernel", [w, c["mlp_dim"]]), (e + "MlpBlock_0/Dense_0/bias", [c["mlp_dim"]]),
                (e + "MlpBlock_0/Dense_1/kernel", [c["mlp_dim"], w]), (e + "MlpBlock_0/Dense_1/bias", [w])]
    out += [("encoder/encoder_norm/scale", [w]), ("encoder/encoder_norm/bias", [w]),
            ("decoder/pre_logits/kernel", [w, c["rep_size"]]), ("decoder/pre_logits/bias", [c["rep_size"]]),
            ("decoder/cls_head/kernel", [c["rep_size"], c["num_classes"]]),
            ("decoder/cls_head/bias", [c["num_classes"]])]
    return out


def recipe_offset_scale(key, shape):
    """(offset, scale) per Flax leaf: kernels with variance 1/fan_in (fan_in = every axis but the
    output's), norm scales near their trained values, a_param so that a = sigmoid(-a_param)^(8 r) spans
    slow and fast channels, conv taps and embeddings moderate."""
    leaf = key.split("/")[-1]
    module = key.split("/")[-2] if "/" in key else ""
    if key.endswith("rg_lru/a_param"):
        return -2.0, 1.5                       # softplus in [0.03, 0.47]: decays from ~0.8 to ~0.02 per frame
    if key.endswith("temporal_pre_norm/scale"):
        return 0.0, 0.25                       # stored as the offset from 1
    if leaf == "scale":
        return 1.0, 0.25                       # LayerNorm
    if leaf in ("pos_embedding", "cls"):
        return 0.0, 0.5
    if leaf in ("bias", "b"):
        return 0.0, 0.2
    if module == "conv_1d" and leaf == "w":
        return 0.0, 0.5
    if leaf == "w":                            # block-diagonal gates [H, in/H, out/H]
        fan_in = shape[1]
    elif module == "out":                      # attention output [heads, head_dim, width]
        fan_in = shape[0] * shape[1]
    elif len(shape) == 5:                      # tokenizer conv THWIO
        fan_in = int(np.prod(shape[:-1]))
    else:                                      # Dense [in, out] and attention q/k/v [in, heads, head_dim]
        fan_in = shape[0]
    return 0.0, math.sqrt(3.0 / fan_in)


def recipe_tensor(key, shape):
    offset, scale = recipe_offset_scale(key, shape)
    u = recipe_uniform(key, int(np.prod(shape)))
    return (offset + scale * u).astype(np.float32).reshape(shape)


def recipe_params(c):
    return {k: torch.from_numpy(recipe_tensor(k, s)) for k, s in parameter_shapes(c)}


def recipe_video(shape):
    """[b, t, h, w, 3] in [0, 1): (u + 1) / 2 from the key "video"."""
    u = recipe_uniform("video", int(np.prod(shape)))
    return torch.from_numpy(((u + 1.0) / 2.0).astype(np.float32).reshape(shape))


# ---------------------------------------------------------------------------------------------- model

def gelu(x):
    return F.gelu(x, approximate="tanh")


def dense(p, name, x):
    return x @ p[name + "/kernel"] + p[name + "/bias"]


def layer_norm(p, name, x, eps=1e-6):
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) * torch.rsqrt(var + eps) * p[name + "/scale"] + p[name + "/bias"]


def rms_norm(p, name, x, eps=1e-6):
    var = (x * x).mean(-1, keepdim=True)
    return x * torch.rsqrt(var + eps) * (p[name + "/scale"] + 1)


def block_diagonal_linear(p, name, x):
    w, b = p[name + "/w"], p[name + "/b"]
    heads = w.shape[0]
    lead = x.shape[:-1]
    xs = x.reshape(-1, heads, w.shape[1]).transpose(0, 1)      # [heads, rows, in/heads]
    y = torch.matmul(xs, w).transpose(0, 1) + b               # [rows, heads, out/heads]
    return y.reshape(*lead, heads * w.shape[2])


def conv1d(p, name, x, segment_pos):
    """recurrentgemma Conv1D in training mode: causal, zero before the sequence, and a window never
    reaches back across a document boundary (segment_pos == 0)."""
    w, b = p[name + "/w"], p[name + "/b"]
    width = w.shape[0]
    t = x.shape[1]
    out = x * w[width - 1]
    boundary = (segment_pos != 0).to(x.dtype)            # [B, t]
    for shift in range(1, min(width, t)):
        window = x[:, : t - shift]                         # x_{s - shift} for outputs s = shift..t-1
        mask = torch.ones(x.shape[0], t - shift, dtype=x.dtype)
        for k in range(1, shift + 1):                      # a boundary between s - shift and s cuts the tap
            mask = mask * boundary[:, k: t - shift + k]
        contribution = window * mask[:, :, None] * w[width - shift - 1]
        out = out + F.pad(contribution, (0, 0, shift, 0))  # out of place: no scatter in an exported graph
    return out + b


def rg_lru(p, name, x, segment_pos):
    gate_x = torch.sigmoid(block_diagonal_linear(p, name + "/input_gate", x))
    gate_a = torch.sigmoid(block_diagonal_linear(p, name + "/a_gate", x))
    log_a = -8.0 * gate_a * F.softplus(p[name + "/a_param"])
    a, a_squared = torch.exp(log_a), torch.exp(2 * log_a)
    gated_x = x * gate_x
    reset = (segment_pos == 0).to(x.dtype)[..., None]
    multiplier = reset + (1 - reset) * torch.sqrt(1 - a_squared)
    normalized_x = gated_x * multiplier
    a = a * (1 - reset)
    h = torch.zeros(x.shape[0], x.shape[2], dtype=x.dtype)
    ys = []
    for step in range(x.shape[1]):                         # jax linear_scan: h_t = a_t h_{t-1} + x_t
        h = a[:, step] * h + normalized_x[:, step]
        ys.append(h)
    return torch.stack(ys, 1)


def residual_block(p, name, x, segment_pos):
    normed = rms_norm(p, name + "/temporal_pre_norm", x)
    rb = name + "/recurrent_block"
    y = gelu(dense(p, rb + "/linear_y", normed))
    u = dense(p, rb + "/linear_x", normed)
    u = conv1d(p, rb + "/conv_1d", u, segment_pos)
    u = rg_lru(p, rb + "/rg_lru", u, segment_pos)
    return x + dense(p, rb + "/linear_out", u * y)


def attention(p, name, x):
    """Flax MultiHeadDotProductAttention (DenseGeneral q/k/v [d, heads, dh], query scaled by 1/sqrt(dh)),
    as plain matrix products over [batch, tokens, d]."""
    d = x.shape[-1]
    heads, dh = p[name + "/query/kernel"].shape[1:]

    def project(part):
        y = x @ p[name + "/%s/kernel" % part].reshape(d, heads * dh) + p[name + "/%s/bias" % part].reshape(-1)
        return y.reshape(*x.shape[:-1], heads, dh).transpose(-3, -2)      # [..., heads, tokens, dh]
    q, k, v = project("query") / math.sqrt(dh), project("key"), project("value")
    o = torch.softmax(q @ k.transpose(-1, -2), dim=-1) @ v                 # [..., heads, tokens, dh]
    o = o.transpose(-3, -2).reshape(*x.shape[:-1], heads * dh)
    return o @ p[name + "/out/kernel"].reshape(heads * dh, d) + p[name + "/out/bias"]


def encoder_block(p, name, x):
    y = attention(p, name + "/MultiHeadDotProductAttention_0", layer_norm(p, name + "/LayerNorm_0", x))
    x = x + y
    y = layer_norm(p, name + "/LayerNorm_1", x)
    y = dense(p, name + "/MlpBlock_0/Dense_1", gelu(dense(p, name + "/MlpBlock_0/Dense_0", y)))
    return x + y


def tokenizer(p, video, c):
    b, t, hh, ww, _ = video.shape
    ps = c["patch"]
    gh, gw = hh // ps, ww // ps                            # VALID: a remainder is dropped
    x = video[:, :, : gh * ps, : gw * ps]
    x = x.reshape(b, t, gh, ps, gw, ps, 3).permute(0, 1, 2, 4, 3, 5, 6).reshape(b * t, gh * gw, ps * ps * 3)
    kernel = p["tokenizer/embedding/kernel"].reshape(ps * ps * 3, -1)
    x = x @ kernel + p["tokenizer/embedding/bias"]
    x = x + p["tokenizer/pos_embedding"]
    cls = p["tokenizer/cls"].expand(b * t, 1, x.shape[-1])
    x = torch.cat([cls, x], 1)
    return x.reshape(b, t, -1, x.shape[-1])


def encode(p, tokens, c):
    b, t, n, w = tokens.shape
    pos = torch.arange(t).repeat(b * n, 1)
    x = tokens
    for i in range(c["depth"]):
        x = x.permute(0, 2, 1, 3).reshape(b * n, t, w)
        x = residual_block(p, "encoder/residualblock_%02d" % i, x, pos)
        x = x.reshape(b, n, t, w).permute(0, 2, 1, 3).reshape(b * t, n, w)
        x = encoder_block(p, "encoder/encoderblock_%d" % i, x)
        x = x.reshape(b, t, n, w)
    return layer_norm(p, "encoder/encoder_norm", x)


def forward(p, video, c, frames_per_clip):
    """The official TRecViT.__call__: {'logits', 'probs', 'clips', 'streaming'}."""
    b, t = video.shape[:2]
    num_clips = max(t // frames_per_clip, 1)
    assert t % num_clips == 0, "the official rearrange needs T divisible by the number of clips"
    clip_len = t // num_clips
    clips = video.reshape(b * num_clips, clip_len, *video.shape[2:])
    encoded = encode(p, tokenizer(p, clips, c), c)
    features = torch.tanh(dense(p, "decoder/pre_logits", encoded[:, :, 0]))   # [b*n, t, rep]
    clip_logits = dense(p, "decoder/cls_head", features.mean(1)).reshape(b, num_clips, -1)
    logits = clip_logits.mean(1)
    probs = torch.softmax(clip_logits, -1).mean(1)
    prefix = features.cumsum(1) / torch.arange(1, clip_len + 1, dtype=features.dtype)[None, :, None]
    streaming = dense(p, "decoder/cls_head", prefix).reshape(b, t, -1)
    return {"logits": logits, "probs": probs, "clips": clip_logits, "streaming": streaming}


# ---------------------------------------------------------------------------------------------- fixtures

CASES = [
    # name, configuration, video [b, t, h, w, 3], frames_per_clip
    ("reduced_two_clips", REDUCED, [2, 8, 32, 48, 3], 4),
    ("reduced_one_clip", REDUCED, [1, 6, 32, 48, 3], 4),        # 6 // 4 = 1 clip of 6 frames
    ("reduced_remainder_pixels", REDUCED, [1, 3, 40, 50, 3], 3),  # VALID drops the 8 and 2 extra pixels
    ("full_b_4_frames", official_config("B"), [1, 4, 224, 224, 3], 4),
    ("full_b_8_frames", official_config("B"), [1, 8, 224, 224, 3], 4),
    ("mu_cli", official_config("mu"), [1, 4, 224, 224, 3], 2),      # `sluice infer --set frames_per_clip=2`
]


def write_fixtures():
    os.makedirs(OUT, exist_ok=True)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    manifest = []
    for name, config, shape, fpc in CASES:
        p = recipe_params(config)
        video = recipe_video(shape)
        with torch.no_grad():
            out = forward(p, video, config, fpc)
            # Sensitivity: time must matter (a shuffled clip changes the logits) and so must the last
            # layer's RG-LRU.
            flipped = forward(p, video.flip(1), config, fpc)["logits"]
            time_effect = ((flipped - out["logits"]).abs().max() / out["logits"].abs().max()).item()
            key = "encoder/residualblock_%02d/recurrent_block/linear_out/kernel" % (config["depth"] - 1)
            saved = p[key]
            p[key] = torch.zeros_like(saved)
            lru_effect = ((forward(p, video, config, fpc)["logits"] - out["logits"]).abs().max()
                          / out["logits"].abs().max()).item()
            p[key] = saved
        files = {}
        for part in ("logits", "streaming", "clips"):
            files[part] = "%s.%s.npy" % (name, part)
            np.save(os.path.join(OUT, files[part]), out[part].numpy().astype(np.float32))
        manifest.append({"name": name, "configuration": config, "video_shape": shape, "frames_per_clip": fpc,
                         "files": files, "parameters": sum(v.numel() for v in p.values())})
        print("%-26s logits %s std %.3f | reversed time changes logits by %.3f, last RG-LRU block by %.3f" % (
            name, tuple(out["logits"].shape), out["logits"].std().item(), time_effect, lru_effect))
    np.savez(os.path.join(OUT, "reduced_checkpoint.npz"),
             **{k: v.numpy() for k, v in recipe_params(REDUCED).items()})
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump({"generator": "scripts/reference/trecvit.py", "seed": RECIPE_SEED, "torch": torch.__version__,
                   "numpy": np.__version__, "cases": manifest},
                  f, indent=1)


def export(variant, path):
    p = recipe_params(official_config(variant))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    np.savez(path, **{k: v.numpy() for k, v in p.items()})
    print("wrote %s (%d tensors, %d parameters)" % (path, len(p), sum(v.numel() for v in p.values())))


def bench(variant, weights, threads, frames, seconds=3.0):
    """Frames per second of the official clip forward (one clip of `frames` frames, 224x224); also the
    median over passes of each pass's ms per frame."""
    torch.set_num_threads(threads)
    c = official_config(variant)
    p = {k: torch.from_numpy(v) for k, v in np.load(weights).items()}
    video = torch.from_numpy(np.random.default_rng(0).random((1, frames, 224, 224, 3), dtype=np.float32))
    with torch.no_grad():
        forward(p, video, c, frames)
        rates = timed_passes(lambda: forward(p, video, c, frames), frames, seconds)
    print(json.dumps(dict({"engine": "torch", "version": torch.__version__, "threads": threads, "variant": variant,
                           "frames": frames}, **rates)), flush=True)


def timed_passes(run, frames, seconds):
    """At least 2 passes of `run` (after the caller's warm-up) and `seconds`: frames per second, mean and
    median ms per frame, passes."""
    times = []
    start = time.perf_counter()
    while len(times) < 2 or time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    elapsed = time.perf_counter() - start
    count = len(times)
    return {"frames_per_s": count * frames / elapsed, "ms_per_frame": 1000 * elapsed / (count * frames),
            "ms_per_frame_median": 1000 * float(np.median(times)) / frames, "passes": count}


ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class ClipLogits(torch.nn.Module):
    """`forward(p, video, c, frames)["logits"]` for one clip, with the flat dict's tensors as buffers (so
    the exporter stores them as initializers)."""

    def __init__(self, p, c, frames):
        super().__init__()
        self.keys, self.c, self.frames = list(p), c, frames
        for i, k in enumerate(self.keys):
            self.register_buffer("p%d" % i, p[k])

    def forward(self, video):
        p = {k: getattr(self, "p%d" % i) for i, k in enumerate(self.keys)}
        return forward(p, video, self.c, self.frames)["logits"]


def bench_onnx(variant, weights, threads, frames, seconds=3.0):
    """As `bench`, with the clip forward (video [1, FRAMES, 224, 224, 3] -> logits [1, classes]) exported to
    ONNX by the TorchScript-based exporter (dynamo=False, opset 17; the conv taps and the RG-LRU scan are
    Python loops over the fixed FRAMES, so they unroll) and run by onnxruntime on the CPU (intra-op threads
    THREADS, inter-op 1, sequential, default graph optimisations). Cached as
    .work/bench/trecvit_VARIANT-fFRAMES-wSIZE-MTIME.onnx (keyed by the weights file's size and mtime; written
    under a temporary name, then renamed; older entries for the same variant and frames are removed). On
    export (or with TRECVIT_ONNX_CHECK=1) onnxruntime's logits are checked against the torch forward: max
    |difference| / max |logit| must be <= 1e-4; the error is kept next to the cache entry and reported."""
    try:
        import onnxruntime as ort
    except ImportError:
        sys.exit("bench-onnx: onnxruntime is not installed for %s; run scripts/bench/setup-venv and use "
                 ".work/venv-bench/bin/python" % sys.executable)
    torch.set_num_threads(threads)
    c = official_config(variant)
    st = os.stat(weights)
    cache = os.path.join(ROOT, ".work", "bench")
    prefix = "trecvit_%s-f%d-" % (variant, frames)
    base = "%sw%d-%d.onnx" % (prefix, st.st_size, st.st_mtime_ns)
    path = os.path.join(cache, base)
    check_path = path + ".check.json"
    p = None
    video = np.random.default_rng(0).random((1, frames, 224, 224, 3), dtype=np.float32)
    if not os.path.exists(path):
        os.makedirs(cache, exist_ok=True)
        p = {k: torch.from_numpy(v) for k, v in np.load(weights).items()}
        start = time.perf_counter()
        # Exported into a scratch folder, then moved (any external data file first, the .onnx last): a killed
        # export leaves no half-written cache entry.
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            try:
                # The tracer's warnings are expected: shapes, the clip count and the loops are static here.
                with torch.no_grad(), redirect_stdout(sys.stderr), warnings.catch_warnings():
                    warnings.simplefilter("ignore", torch.jit.TracerWarning)
                    warnings.simplefilter("ignore", DeprecationWarning)      # the legacy exporter's notice
                    torch.onnx.export(ClipLogits(p, c, frames), (torch.from_numpy(video),), os.path.join(tmp, base),
                                      dynamo=False, opset_version=17, input_names=["video"],
                                      output_names=["logits"], do_constant_folding=True)
            except Exception as e:
                sys.exit("bench-onnx: torch %s could not export TRecViT-%s (%d frames) to ONNX: %s: %s"
                         % (torch.__version__, variant, frames, type(e).__name__,
                            str(e).strip().splitlines()[0] if str(e).strip() else ""))
            for f in sorted(os.listdir(tmp), key=lambda f: f == base):
                os.replace(os.path.join(tmp, f), os.path.join(cache, f))
        for f in os.listdir(cache):                      # stale entries for other weights files
            if f.startswith(prefix) and not f.startswith(base) and (".onnx" in f):
                os.remove(os.path.join(cache, f))
        print("exported %s (%.0f MB) in %.0f s" % (path, os.path.getsize(path) / 1e6, time.perf_counter() - start),
              file=sys.stderr, flush=True)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    got = session.run(None, {"video": video})[0]        # also the warm-up
    if p is not None or os.environ.get("TRECVIT_ONNX_CHECK") == "1" or not os.path.exists(check_path):
        if p is None:
            p = {k: torch.from_numpy(v) for k, v in np.load(weights).items()}
        with torch.no_grad():
            expected = forward(p, torch.from_numpy(video), c, frames)["logits"].numpy()
        error = float(np.abs(got - expected).max() / np.abs(expected).max())
        print("bench-onnx: TRecViT-%s, %d frames: onnxruntime vs torch logits, max relative error %.2e"
              % (variant, frames, error), file=sys.stderr, flush=True)
        if not error <= 1e-4:
            sys.exit("bench-onnx: onnxruntime's logits differ from torch's by %.2e (relative to max |logit|, "
                     "limit 1e-4); a stale %s? delete it and rerun" % (error, path))
        with open(check_path + ".tmp", "w") as f:
            json.dump({"max_rel_error": error, "torch": torch.__version__, "onnxruntime": ort.__version__}, f)
        os.replace(check_path + ".tmp", check_path)
        p = None
    else:
        with open(check_path) as f:
            error = json.load(f)["max_rel_error"]
    rates = timed_passes(lambda: session.run(None, {"video": video}), frames, seconds)
    print(json.dumps(dict({"engine": "onnxruntime", "version": ort.__version__, "threads": threads, "variant": variant,
                           "frames": frames}, **rates, max_rel_error=error)), flush=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "export":
        export(sys.argv[2], sys.argv[3])
    elif len(sys.argv) > 1 and sys.argv[1] == "bench":
        bench(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]),
              float(sys.argv[6]) if len(sys.argv) > 6 else 3.0)
    elif len(sys.argv) > 1 and sys.argv[1] == "bench-onnx":
        bench_onnx(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]),
                   float(sys.argv[6]) if len(sys.argv) > 6 else 3.0)
    else:
        write_fixtures()
