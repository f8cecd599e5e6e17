#!/usr/bin/env python3
"""PyTorch reference for plain ViG (hustvl/ViG, `classification/models/vig.py`, Apache-2.0).

The module tree below is written from the official `vig.py` with the same module and parameter names
(patch_embed.proj.{0,1,3,4}, pos_embed, blocks.i.{attn_norm, attn.{in_proj.0, qkv_proj, gk_proj.0,
gk_proj.1, g_proj, g_norm, l_norm, o_proj}, mlp_norm, mlp.{gate_proj, down_proj}}, norm, head), so
official state dicts load into it unchanged. It needs neither timm, triton, fla nor causal_conv1d:
  - fla's Triton RMSNorm            -> x * rsqrt(mean(x^2) + eps) * w
  - swiglu_linear(gate, y, W)       -> (silu(gate) * y) @ W^T
  - bid_fused_recurrent_gla         -> the step-by-step recurrence in both directions (`naive_bid_gla`,
                                       the oracle): S_t = diag(exp g_t) S_{t-1} + k_t v_t^T,
                                       o_t = S_t^T q_t * d_k^-1/2, backward direction reading gb_t;
                                       the kernel returns (o_f + o_b) / 2 and the eval path divides by
                                       2 again.

Writes into Tests/SluiceModelsTests/Fixtures/vig/ (run with Debian's interpreter, which has torch):
    /usr/bin/python3 scripts/reference/vig.py
  manifest.json          every case (configuration, files) and every configuration's state_dict keys/shapes
  CONFIG.pth             {'model': state_dict} of each reduced configuration (random weights, seeded)
  INPUT.input.npy        NCHW float32 inputs (native grid, resized grid)
  CASE.logits.npy        logits of the reference
"""
import json
import os

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "Tests", "SluiceModelsTests", "Fixtures", "vig")


# ----------------------------------------------------------------------------------------------
# Model: official module names, eval forward.

class RMSNorm(nn.Module):
    def __init__(self, hidden_size, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.eps = eps

    def forward(self, x, residual=None, prenorm=False):
        if residual is not None:
            x = x + residual
            residual = x
        y = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight
        return (y, residual) if prenorm else y


class LayerNorm2d(nn.LayerNorm):
    def forward(self, x):
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


def naive_recurrent_gla(q, k, v, gk, reverse=False):
    """q, k, gk: [B, H, T, dk]; v: [B, H, T, dv]. Step-by-step float32 recurrence (fla naive form)."""
    B, H, T, dk = q.shape
    dv = v.shape[-1]
    scale = dk ** -0.5
    S = torch.zeros(B, H, dk, dv, dtype=torch.float32)
    o = torch.zeros(B, H, T, dv, dtype=torch.float32)
    steps = range(T - 1, -1, -1) if reverse else range(T)
    for t in steps:
        S = S * gk[:, :, t].exp()[..., None] + k[:, :, t, :, None] * v[:, :, t, None, :]
        o[:, :, t] = (S * (q[:, :, t] * scale)[..., None]).sum(-2)
    return o


def naive_bid_gla(q, k, v, gk):
    """gk: [2B, H, T, dk], first half forward gates, second half backward gates (eval layout)."""
    B = q.shape[0]
    of = naive_recurrent_gla(q, k, v, gk[:B])
    ob = naive_recurrent_gla(q, k, v, gk[B:], reverse=True)
    return (of + ob) / 2


class GatedLinearAttention(nn.Module):
    def __init__(self, d_model, expand_v=1.0, expand_k=0.5, num_heads=3, layernorm_eps=1e-6,
                 gate_logit_normalizer=16, gate_low_rank_dim=16, use_out_act=False, use_act_in_conv=True):
        super().__init__()
        self.value_dim = int(d_model * expand_v)
        self.key_dim = int(d_model * expand_k)
        self.num_heads = num_heads
        self.head_qk_dim = self.key_dim // num_heads
        self.head_v_dim = self.value_dim // num_heads
        if use_out_act:
            self.out_act = nn.SiLU()
        self.in_proj = nn.Sequential(
            nn.Conv2d(d_model, d_model, kernel_size=3, padding=1, groups=d_model, bias=False),
            nn.SiLU() if use_act_in_conv else nn.Identity(),
        )
        self.qkv_proj = nn.Linear(d_model, 2 * self.key_dim + self.value_dim, bias=False)
        self.gk_proj = nn.Sequential(nn.Linear(d_model, gate_low_rank_dim, bias=False),
                                     nn.Linear(gate_low_rank_dim, self.key_dim * 2, bias=True))
        self.o_proj = nn.Linear(self.value_dim, d_model, bias=False)
        self.g_norm = RMSNorm(self.head_v_dim, eps=layernorm_eps)
        self.l_norm = RMSNorm(self.head_v_dim, eps=layernorm_eps)
        self.g_proj = nn.Linear(d_model, self.value_dim, bias=True)
        self.gate_logit_normalizer = gate_logit_normalizer

    def forward(self, x, patch_resolution):
        B, L, C = x.shape
        Hp, Wp = patch_resolution
        h = self.num_heads
        x_2d = x.reshape(B, Hp, Wp, C).permute(0, 3, 1, 2).contiguous()
        local_out = self.in_proj(x_2d).flatten(2)  # B, C, L
        xs = local_out.permute(0, 2, 1).contiguous()
        q, k, v = torch.split(self.qkv_proj(xs), [self.key_dim, self.key_dim, self.value_dim], dim=2)
        gk = self.gk_proj(xs)
        fw_gk, bw_gk = gk.chunk(2, dim=2)
        gk = torch.cat([fw_gk, bw_gk], dim=0)
        heads = lambda t: t.reshape(t.shape[0], L, h, -1).permute(0, 2, 1, 3)  # b n (h d) -> b h n d
        gk, q, k, v = heads(gk), heads(q), heads(k), heads(v)
        gk = F.logsigmoid(gk) / self.gate_logit_normalizer
        o = naive_bid_gla(q, k, v, gk)
        o = o / 2
        o = o.permute(0, 2, 1, 3)  # b l h d
        local_out = local_out.reshape(B, h, -1, L).permute(0, 3, 1, 2)  # b (h d) l -> b l h d
        local_out = self.l_norm(local_out)
        o = self.g_norm(o)
        g = self.g_proj(xs).sigmoid().reshape(B, L, h, -1)
        o = o * g + local_out * (1 - g)
        o = o.reshape(B, L, -1)
        if hasattr(self, "out_act"):
            o = self.out_act(o)
        return self.o_proj(o)


class GLAMLP(nn.Module):
    def __init__(self, hidden_size, intermediate_size=None):
        super().__init__()
        if intermediate_size is None:
            intermediate_size = int(hidden_size * 4 * 2 / 3)
            intermediate_size = 256 * ((intermediate_size + 256 - 1) // 256)
        self.gate_proj = nn.Linear(hidden_size, intermediate_size * 2, bias=False)
        self.down_proj = nn.Linear(intermediate_size, hidden_size, bias=False)

    def forward(self, x):
        gate, y = self.gate_proj(x).chunk(2, -1)
        return (F.silu(gate) * y) @ self.down_proj.weight.t()


class GLABlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        d = c["embed_dim"]
        self.attn_norm = RMSNorm(d, eps=1e-6)
        self.attn = GatedLinearAttention(d, expand_v=c["expand_v"], expand_k=c["expand_k"], num_heads=c["num_heads"],
                                         layernorm_eps=1e-6, use_out_act=c["use_out_act"],
                                         use_act_in_conv=c["use_act_in_conv"])
        self.mlp_norm = RMSNorm(d, eps=1e-6)
        self.mlp = GLAMLP(d, c.get("intermediate_size"))

    def forward(self, x, patch_resolution):
        residual = x
        h = self.attn(self.attn_norm(x), patch_resolution)
        h, residual = self.mlp_norm(h, residual, True)
        return residual + self.mlp(h)


class V2PatchEmbed(nn.Module):
    def __init__(self, patch_size, in_chans, embed_dim):
        super().__init__()
        stride = patch_size // 2
        self.proj = nn.Sequential(
            nn.Conv2d(in_chans, embed_dim // 2, kernel_size=stride + 1, stride=stride, padding=1, bias=True),
            LayerNorm2d(embed_dim // 2),
            nn.SiLU(),
            nn.Conv2d(embed_dim // 2, embed_dim, kernel_size=3, stride=2, padding=1, bias=True),
            LayerNorm2d(embed_dim),
        )

    def forward(self, x):
        x = self.proj(x)
        _, _, H, W = x.shape
        return x.flatten(2).transpose(1, 2), (H, W)


def resize_pos_embed(pos_embed, src_shape, dst_shape):
    if tuple(src_shape) == tuple(dst_shape):
        return pos_embed
    _, L, C = pos_embed.shape
    w = pos_embed.reshape(1, src_shape[0], src_shape[1], C).permute(0, 3, 1, 2)
    w = F.interpolate(w.float(), size=dst_shape, align_corners=False, mode="bicubic")
    return torch.flatten(w, 2).transpose(1, 2)


class ViG(nn.Module):
    def __init__(self, c):
        super().__init__()
        d = c["embed_dim"]
        self.patch_embed = V2PatchEmbed(c["patch_size"], 3, d)
        grid = (c["img_size"] - c["patch_size"]) // c["patch_size"] + 1
        self.patch_resolution = (c["img_size"] // c["patch_size"],) * 2
        self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid, d))
        self.head = nn.Linear(d, c["num_classes"])
        self.blocks = nn.ModuleList([GLABlock(c) for _ in range(c["depth"])])
        self.norm = RMSNorm(d, eps=1e-6)

    def forward(self, x):
        B = x.shape[0]
        x, res = self.patch_embed(x)
        x = x + resize_pos_embed(self.pos_embed, self.patch_resolution, res)
        for blk in self.blocks:
            x = blk(x, res)
        x = self.norm(x)
        x = x.reshape(B, res[0], res[1], -1).mean(dim=(1, 2))
        return self.head(x)


# ----------------------------------------------------------------------------------------------
# Fixtures.

def randomize(model, gen):
    """Weights large enough that every path (both scan directions, local branch, gates) matters."""
    sd = model.state_dict()
    for key, t in sd.items():
        shape = t.shape
        r = torch.randn(shape, generator=gen)
        if key.endswith("gk_proj.1.bias"):
            # decays sigmoid(z)^(1/16) spread over roughly 0.6 .. 0.99
            val = torch.rand(shape, generator=gen) * 10 - 8
        elif key.endswith("norm.weight") or key.endswith(".1.weight") and "patch_embed" in key \
                or key.endswith(".4.weight") and "patch_embed" in key:
            val = 1 + 0.3 * r
        elif key == "pos_embed":
            val = 0.5 * r
        elif key.endswith("bias"):
            val = 0.2 * r
        else:
            fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
            val = r / np.sqrt(fan_in)
            if "qkv_proj" in key:
                val = val * 2
        t.copy_(val.to(torch.float32))
    model.load_state_dict(sd)


CONFIGS = {
    # ViG-T style switches (USE_ACT_IN_CONV / USE_OUT_ACT on), reduced size.
    "reduced_act": dict(embed_dim=48, depth=2, num_heads=3, expand_k=0.5, expand_v=1.0, patch_size=16,
                        img_size=64, intermediate_size=64, use_act_in_conv=True, use_out_act=True, num_classes=10),
    # ViG-S/B style (both off).
    "reduced_noact": dict(embed_dim=48, depth=2, num_heads=3, expand_k=0.5, expand_v=1.0, patch_size=16,
                          img_size=64, intermediate_size=64, use_act_in_conv=False, use_out_act=False, num_classes=10),
}

INPUTS = {
    "native": (2, 3, 64, 64),    # grid 4x4 = the pos_embed grid
    "resized": (1, 3, 96, 80),   # grid 6x5: pos_embed resized bicubic (align_corners=False)
}

CASES = [
    # (case name, config, input)
    ("act_native", "reduced_act", "native"),
    ("act_resized", "reduced_act", "resized"),
    ("noact_native", "reduced_noact", "native"),
    ("noact_resized", "reduced_noact", "resized"),
]


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.set_num_threads(1)
    manifest = {"configurations": {}, "cases": []}
    models = {}
    for i, (name, c) in enumerate(CONFIGS.items()):
        gen = torch.Generator().manual_seed(1234 + i)
        model = ViG(c).eval()
        randomize(model, gen)
        models[name] = model
        sd = {k: v.clone().contiguous() for k, v in model.state_dict().items()}
        torch.save({"model": sd}, os.path.join(OUT, f"{name}.pth"))
        manifest["configurations"][name] = {
            "configuration": c, "weights": f"{name}.pth",
            "parameters": [[k, list(v.shape)] for k, v in sd.items()],
        }
    inputs = {}
    for j, (iname, shape) in enumerate(INPUTS.items()):
        gen = torch.Generator().manual_seed(99 + j)
        inputs[iname] = torch.randn(shape, generator=gen)
        np.save(os.path.join(OUT, f"{iname}.input.npy"), inputs[iname].numpy().astype(np.float32))
    for case, cname, iname in CASES:
        with torch.no_grad():
            logits = models[cname](inputs[iname])
        np.save(os.path.join(OUT, f"{case}.logits.npy"), logits.numpy().astype(np.float32))
        manifest["cases"].append({"name": case, "configuration": cname, "input": f"{iname}.input.npy",
                                  "logits": f"{case}.logits.npy"})
        print(case, tuple(logits.shape), "max |logit|", float(logits.abs().max()))
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)


if __name__ == "__main__":
    main()
