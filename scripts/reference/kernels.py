#!/usr/bin/python3
"""Reference outputs for the SluiceTensor kernels, computed with PyTorch.

Writes seeded random inputs/weights (in PyTorch's own layouts: NCHW activations, OIHW conv weights,
[out, in] linear weights) and the expected outputs as float32 .npy files, plus `manifest.json` with each
case's parameters, into Tests/SluiceTensorTests/Fixtures/. The Swift tests convert layouts through the
real API (Tensor.nchwToNHWC, Conv2d(torchWeight:...)) and compare.

Expected values are computed in float64 from the float32 inputs, so they are the float32 kernels'
"true" answer rather than another float32 implementation's rounding.

Run with the system interpreter that has torch:  /usr/bin/python3 scripts/reference/kernels.py
"""
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "Tests", "SluiceTensorTests", "Fixtures")

torch.manual_seed(20261123)
manifest = {}
written = []


def rand(*shape, scale=1.0, offset=0.0):
    """float32 random normal values (the inputs), returned as float64 for the reference math."""
    return (torch.randn(*shape, dtype=torch.float32) * scale + offset).to(torch.float32).double()


def save(name, tensor):
    array = tensor.detach().to(torch.float32).contiguous().numpy()
    assert np.isfinite(array).all(), name
    path = os.path.join(OUT, name + ".npy")
    np.save(path, array)
    written.append(path)


def case(name, **params):
    manifest[name] = params


# ---------------------------------------------------------------- linear
def linear_case(name, x_shape, out_features, bias, activation="identity"):
    x = rand(*x_shape)
    w = rand(out_features, x_shape[-1], scale=x_shape[-1] ** -0.5)
    b = rand(out_features) if bias else None
    y = F.linear(x, w, b)
    y = ACTIVATIONS[activation](y)
    save(name + "_x", x)
    save(name + "_w", w)
    if bias:
        save(name + "_b", b)
    save(name + "_y", y)
    case(name, kind="linear", bias=bias, activation=activation)


# ---------------------------------------------------------------- activations
ACTIVATIONS = {
    "identity": lambda t: t,
    "relu": F.relu,
    "relu6": F.relu6,
    "silu": F.silu,
    "sigmoid": torch.sigmoid,
    "gelu": lambda t: F.gelu(t),
    "geluTanh": lambda t: F.gelu(t, approximate="tanh"),
}


# ---------------------------------------------------------------- convolution
def conv_case(name, n, c_in, h, w, c_out, kernel, stride=1, padding=0, dilation=1, groups=1,
              bias=True, tf_same=False, batchnorm=False, activation="identity"):
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    x = rand(n, c_in, h, w)
    fan_in = c_in // groups * kh * kw
    weight = rand(c_out, c_in // groups, kh, kw, scale=fan_in ** -0.5)
    b = rand(c_out, scale=0.5) if bias else None
    sh, sw = (stride, stride) if isinstance(stride, int) else stride
    dh, dw = (dilation, dilation) if isinstance(dilation, int) else dilation
    params = dict(kind="conv", stride=[sh, sw], dilation=[dh, dw], groups=groups, bias=bias,
                  activation=activation, batchnorm=batchnorm)
    if tf_same:
        # TensorFlow "SAME": out = ceil(in / stride), the odd pixel of padding at bottom/right.
        def pads(size, k, s, d):
            out = -(-size // s)
            total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
            return total // 2, total - total // 2
        top, bottom = pads(h, kh, sh, dh)
        left, right = pads(w, kw, sw, dw)
        assert (top, left) != (bottom, right), "SAME case should be asymmetric"
        y = F.conv2d(F.pad(x, (left, right, top, bottom)), weight, b, (sh, sw), 0, (dh, dw), groups)
        params["padding"] = "same"
        params["expectedPadding"] = [top, left, bottom, right]
    else:
        ph, pw = (padding, padding) if isinstance(padding, int) else padding
        y = F.conv2d(x, weight, b, (sh, sw), (ph, pw), (dh, dw), groups)
        params["padding"] = [ph, pw, ph, pw]   # top, left, bottom, right
    if batchnorm:
        gamma = rand(c_out, scale=0.5, offset=1.0)
        beta = rand(c_out, scale=0.5)
        mean = rand(c_out, scale=0.7)
        var = torch.rand(c_out, dtype=torch.float32).double() * 2 + 0.2
        eps = 1e-3
        y = F.batch_norm(y, mean, var, gamma, beta, training=False, eps=eps)
        save(name + "_bn_weight", gamma)
        save(name + "_bn_bias", beta)
        save(name + "_bn_mean", mean)
        save(name + "_bn_var", var)
        params["eps"] = eps
    y = ACTIVATIONS[activation](y)
    save(name + "_x", x)
    save(name + "_w", weight)
    if bias:
        save(name + "_b", b)
    save(name + "_y", y)
    case(name, **params)


# ---------------------------------------------------------------- write everything
def main():
    os.makedirs(OUT, exist_ok=True)
    for entry in os.listdir(OUT):
        if entry.endswith(".npy") or entry == "manifest.json":
            os.remove(os.path.join(OUT, entry))

    # Linear (PyTorch [out, in] weights), 2-D and 3-D input, with and without bias, one fused activation.
    linear_case("linear_2d_bias", (5, 24), 16, bias=True)
    linear_case("linear_2d_nobias", (5, 24), 16, bias=False)
    linear_case("linear_3d_bias", (2, 7, 24), 20, bias=True)
    linear_case("linear_3d_nobias", (2, 7, 24), 20, bias=False)
    linear_case("linear_3d_bias_gelu", (2, 7, 24), 20, bias=True, activation="gelu")

    # Dense and grouped convolutions (im2col / GEMM path).
    conv_case("conv1x1", 2, 16, 6, 6, 24, 1)                                   # pure GEMM path
    conv_case("conv1x1_nobias", 1, 16, 5, 7, 12, 1, bias=False)
    conv_case("conv1x1_g2", 1, 16, 5, 5, 12, 1, groups=2)                      # grouped pointwise GEMM
    conv_case("conv1x1_s2", 1, 8, 7, 7, 12, 1, stride=2)                       # 1x1 but strided: im2col
    conv_case("conv3x3_s1", 2, 8, 9, 9, 12, 3, padding=1)
    conv_case("conv3x3_s2", 2, 8, 10, 10, 12, 3, stride=2, padding=1)
    conv_case("conv3x3_s2_nopad", 1, 3, 11, 11, 8, 3, stride=2)
    conv_case("conv3x3_dil2", 1, 8, 11, 11, 10, 3, padding=2, dilation=2)
    conv_case("conv3x3_g2", 2, 8, 9, 9, 12, 3, padding=1, groups=2)
    conv_case("conv3x3_g4", 1, 8, 8, 8, 16, 3, stride=2, padding=1, groups=4)
    conv_case("conv_nonsquare", 1, 6, 7, 11, 10, (3, 5), stride=(2, 1), padding=(1, 2))
    conv_case("conv_same_s2", 1, 8, 10, 10, 12, 3, stride=2, tf_same=True)
    conv_case("conv_bn", 2, 8, 8, 8, 12, 3, padding=1, batchnorm=True)
    conv_case("conv_bn_nobias_relu6", 1, 8, 8, 8, 12, 3, stride=2, padding=1, bias=False,
              batchnorm=True, activation="relu6")
    conv_case("conv_multiplier2", 1, 8, 7, 7, 16, 3, padding=1, groups=8)     # depthwise x2: grouped GEMM
    conv_case("conv_silu", 1, 8, 6, 6, 12, 3, padding=1, activation="silu")

    # Depthwise (groups == in == out): direct kernel. 20 and 13 channels exercise the non-multiple-of-8 tail.
    conv_case("dw3x3_s1", 2, 20, 9, 9, 20, 3, padding=1, groups=20)
    conv_case("dw3x3_s2", 2, 20, 10, 10, 20, 3, stride=2, padding=1, groups=20)
    conv_case("dw5x5_s2", 1, 24, 11, 11, 24, 5, stride=2, padding=2, groups=24)
    conv_case("dw7x7_s2", 1, 16, 12, 12, 16, 7, stride=2, padding=3, groups=16)
    conv_case("dw7x7_s1", 1, 13, 9, 9, 13, 7, padding=3, groups=13)
    conv_case("dw3x3_dil2", 1, 16, 9, 9, 16, 3, padding=2, dilation=2, groups=16)
    conv_case("dw3x3_nopad", 1, 12, 8, 9, 12, 3, groups=12, bias=False)
    conv_case("dw_nonsquare", 1, 16, 7, 11, 16, (3, 5), stride=(2, 1), padding=(1, 2), groups=16)
    conv_case("dw5x5_same_s2", 1, 16, 10, 10, 16, 5, stride=2, groups=16, tf_same=True)
    conv_case("dw3x3_same_s2", 2, 13, 8, 12, 13, 3, stride=2, groups=13, tf_same=True)
    conv_case("dw_bn_silu", 1, 24, 8, 8, 24, 3, padding=1, groups=24, batchnorm=True, activation="silu")
    conv_case("dw_bn_relu6_s2", 1, 16, 9, 9, 16, 5, stride=2, padding=2, groups=16, bias=False,
              batchnorm=True, activation="relu6")

    # Standalone BatchNorm (eval mode).
    x = rand(2, 12, 5, 5, scale=2.0, offset=0.5)
    gamma, beta = rand(12, scale=0.5, offset=1.0), rand(12, scale=0.5)
    mean, var = rand(12, scale=0.7), torch.rand(12, dtype=torch.float32).double() * 2 + 0.2
    save("batchnorm_x", x)
    save("batchnorm_weight", gamma)
    save("batchnorm_bias", beta)
    save("batchnorm_mean", mean)
    save("batchnorm_var", var)
    save("batchnorm_y", F.batch_norm(x, mean, var, gamma, beta, training=False, eps=1e-5))
    case("batchnorm", kind="batchnorm", eps=1e-5)

    # LayerNorm over channels: NCHW input, normalised over C (the NHWC last axis).
    for name, eps, affine in (("layernorm_eps1e-6", 1e-6, True), ("layernorm_eps1e-5", 1e-5, True),
                              ("layernorm_noaffine", 1e-5, False)):
        x = rand(2, 32, 5, 4, scale=3.0, offset=5.0)
        w, b = rand(32, scale=0.5, offset=1.0), rand(32, scale=0.5)
        nhwc = x.permute(0, 2, 3, 1)
        y = F.layer_norm(nhwc, (32,), w if affine else None, b if affine else None, eps).permute(0, 3, 1, 2)
        save(name + "_x", x)
        if affine:
            save(name + "_w", w)
            save(name + "_b", b)
        save(name + "_y", y)
        case(name, kind="layernorm", eps=eps, affine=affine)

    # RMSNorm over the last axis of a token sequence.
    for name, eps, affine in (("rmsnorm", 1e-6, True), ("rmsnorm_noweight", 1e-5, False)):
        x = rand(3, 7, 48, scale=2.0, offset=0.3)
        w = rand(48, scale=0.5, offset=1.0)
        y = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
        if affine:
            y = y * w
            save(name + "_w", w)
        save(name + "_x", x)
        save(name + "_y", y)
        case(name, kind="rmsnorm", eps=eps, affine=affine)

    # Activations: a dense grid over [-12, 12], random values, and large magnitudes for saturation.
    grid = torch.linspace(-12, 12, 2401, dtype=torch.float32)
    extremes = torch.tensor([-100, -88.5, -87, -50, -30, -20, -15, -1e-3, -1e-6, 0, 1e-6, 1e-3, 15, 20, 30,
                             44, 45, 50, 87, 88.5, 100], dtype=torch.float32)
    x = torch.cat([grid, torch.randn(600) * 4, extremes]).to(torch.float32).double()
    save("activation_x", x)
    for name, fn in ACTIVATIONS.items():
        if name != "identity":
            save("activation_" + name, fn(x))
    case("activation", kind="activation", names=[n for n in ACTIVATIONS if n != "identity"])

    # Softmax over the last axis, with large logits (and one row with a huge offset).
    x = rand(4, 6, 37, scale=15.0)
    x[0, 0] += 1000.0
    x[1, 2, :5] = -1e4
    x = x.to(torch.float32).double()
    save("softmax_x", x)
    save("softmax_y", F.softmax(x, dim=-1))
    case("softmax", kind="softmax")

    # Pooling (NCHW in PyTorch; the Swift side converts to NHWC).
    x = rand(2, 8, 9, 9)
    save("pool_x", x)
    save("pool_max_k3s2p1", F.max_pool2d(x, 3, 2, 1))
    save("pool_max_k2s2", F.max_pool2d(x, 2, 2))
    save("pool_avg_k3s2p1_incl", F.avg_pool2d(x, 3, 2, 1, count_include_pad=True))
    save("pool_avg_k3s2p1_excl", F.avg_pool2d(x, 3, 2, 1, count_include_pad=False))
    save("pool_avg_k3s1p1_excl", F.avg_pool2d(x, 3, 1, 1, count_include_pad=False))
    save("pool_avg_k2s2", F.avg_pool2d(x, 2, 2))
    save("pool_adaptive_avg", F.adaptive_avg_pool2d(x, 1).flatten(1))
    save("pool_global_avg", x.mean(dim=(2, 3)))
    case("pool", kind="pool")

    # Permute.
    x = rand(2, 3, 4, 5)
    save("permute_x", x)
    save("permute_0231", x.permute(0, 2, 3, 1))
    save("permute_3102", x.permute(3, 1, 0, 2))
    x2 = rand(6, 9)
    save("permute2d_x", x2)
    save("permute2d_10", x2.T)
    case("permute", kind="permute")

    # NPY reader: other dtypes and header versions than the float32 v1.0 files above.
    values = rand(3, 5)
    save("npy_expected", values)
    for dtype in ("float64", "float16"):
        path = os.path.join(OUT, f"npy_{dtype}.npy")
        np.save(path, values.numpy().astype(dtype))
        written.append(path)
    path = os.path.join(OUT, "npy_int32.npy")
    np.save(path, np.arange(-7, 8, dtype=np.int32).reshape(3, 5))
    written.append(path)
    path = os.path.join(OUT, "npy_v2_float32.npy")
    with open(path, "wb") as f:
        np.lib.format.write_array(f, values.numpy().astype(np.float32), version=(2, 0))
    written.append(path)
    path = os.path.join(OUT, "npy_1d.npy")
    np.save(path, np.array([1.5, -2.0, 3.25], dtype=np.float32))
    written.append(path)
    case("npy", kind="npy")

    manifest["provenance"] = {"generator": "scripts/reference/kernels.py", "seed": 20261123,
                              "torch": torch.__version__, "numpy": np.__version__}
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
        f.write("\n")
    total = sum(os.path.getsize(p) for p in written)
    print(f"wrote {len(written)} arrays ({total / 1024:.0f} KiB) and manifest.json to {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
