// ViG (Liao et al., "ViG: Linear-complexity Visual Sequence Learning with Gated Linear Attention"),
// plain (non-hierarchical) variant, following the official `classification/models/vig.py` of hustvl/ViG
// (Apache-2.0), whose module names the released checkpoints use:
//   patch_embed.proj.{0: Conv2d k=p/2+1 s=p/2 p=1, 1: LayerNorm2d, 2: SiLU, 3: Conv2d 3x3/2 p=1, 4: LayerNorm2d},
//   pos_embed [1, grid², C], head,
//   blocks.i.{attn_norm, attn.{in_proj.0 (3x3 depthwise, no bias), qkv_proj, gk_proj.{0,1}, o_proj, g_norm,
//             l_norm, g_proj}, mlp_norm, mlp.{gate_proj, down_proj}}, norm.
// Eval forward of a block (`GLABlock` + `GatedLinearAttention`, eval branch):
//   a = RMSNorm(x); L = dwconv3x3(a) (SiLU for ViG-T); q|k|v, gates and g all come from L;
//   gf|gb = logsigmoid(gk_proj(L)) / 16; o = (o_fwd + o_bwd) / 2 / 2 (the kernel's mean, then `o /= 2`),
//   computed by the chunked scan (`GLA.bidirectionalChunked`, tested against the step-by-step recurrence);
//   y = RMSNorm_g(o) ⊙ σ(g_proj L) + RMSNorm_l(L) ⊙ (1 − σ(g_proj L)) per head (one [d_v] weight shared
//   by the heads); SiLU for ViG-T; x += o_proj(y); x += down(SiLU(gate) ⊙ up) on RMSNorm(x).
// The token mixer (`GatedLinearAttention2D`) and the SwiGLU are shared with ViG-H (ViGH.swift).
// Every RMSNorm has eps 1e-6; the stem's LayerNorm2d eps 1e-5. pos_embed is resized bicubically
// (align_corners=False) when the token grid differs from the trained one.

import Foundation
import SluiceTensor

public struct ViGConfiguration: Codable, Sendable, Equatable {
    public var embedDim: Int
    public var depth: Int
    public var numHeads: Int
    public var expandK: Double
    public var expandV: Double
    /// `patch_size`: the stem's total stride (first conv stride patch/2, second 2).
    public var patchSize: Int
    /// `img_size`: the input side the pos_embed grid was trained for.
    public var imgSize: Int
    /// The SwiGLU hidden size; nil means the official default 256·ceil(int(8·C/3)/256).
    public var intermediateSize: Int?
    /// `USE_ACT_IN_CONV`: SiLU after the 3x3 depthwise conv (ViG-T).
    public var useActInConv: Bool
    /// `USE_OUT_ACT`: SiLU before o_proj (ViG-T).
    public var useOutAct: Bool
    public var numClasses: Int
    public var inChans: Int

    enum CodingKeys: String, CodingKey {
        case embedDim = "embed_dim", depth, numHeads = "num_heads", expandK = "expand_k", expandV = "expand_v"
        case patchSize = "patch_size", imgSize = "img_size", intermediateSize = "intermediate_size"
        case useActInConv = "use_act_in_conv", useOutAct = "use_out_act", numClasses = "num_classes"
        case inChans = "in_chans"
    }

    public init(embedDim: Int, depth: Int, numHeads: Int, expandK: Double = 0.5, expandV: Double = 1,
                patchSize: Int = 16, imgSize: Int = 224, intermediateSize: Int? = nil,
                useActInConv: Bool, useOutAct: Bool, numClasses: Int = 1000, inChans: Int = 3) {
        self.embedDim = embedDim; self.depth = depth; self.numHeads = numHeads
        self.expandK = expandK; self.expandV = expandV; self.patchSize = patchSize; self.imgSize = imgSize
        self.intermediateSize = intermediateSize; self.useActInConv = useActInConv; self.useOutAct = useOutAct
        self.numClasses = numClasses; self.inChans = inChans
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(embedDim: try c.decode(Int.self, forKey: .embedDim), depth: try c.decode(Int.self, forKey: .depth),
                  numHeads: try c.decode(Int.self, forKey: .numHeads),
                  expandK: try c.decodeIfPresent(Double.self, forKey: .expandK) ?? 0.5,
                  expandV: try c.decodeIfPresent(Double.self, forKey: .expandV) ?? 1,
                  patchSize: try c.decodeIfPresent(Int.self, forKey: .patchSize) ?? 16,
                  imgSize: try c.decodeIfPresent(Int.self, forKey: .imgSize) ?? 224,
                  intermediateSize: try c.decodeIfPresent(Int.self, forKey: .intermediateSize),
                  useActInConv: try c.decode(Bool.self, forKey: .useActInConv),
                  useOutAct: try c.decode(Bool.self, forKey: .useOutAct),
                  numClasses: try c.decodeIfPresent(Int.self, forKey: .numClasses) ?? 1000,
                  inChans: try c.decodeIfPresent(Int.self, forKey: .inChans) ?? 3)
    }

    public var keyDim: Int { Int(Double(embedDim) * expandK) }
    public var valueDim: Int { Int(Double(embedDim) * expandV) }
    public var headKeyDim: Int { keyDim / numHeads }
    public var headValueDim: Int { valueDim / numHeads }
    /// gk_proj's low-rank width (`gate_low_rank_dim`).
    public static let gateLowRankDim = 16
    public var mlpHidden: Int {
        if let intermediateSize { return intermediateSize }
        let raw = Int(Double(embedDim) * 4 * 2 / 3)
        return 256 * ((raw + 255) / 256)
    }
    /// Side of the trained pos_embed grid (`V2PatchEmbed.grid_size`).
    public var positionGrid: Int { (imgSize - patchSize) / patchSize + 1 }

    /// The official constructors `vig_tiny`, `vig_small`, `vig_base` (224, patch 16, depth 12).
    public static func named(_ name: String) -> ViGConfiguration? {
        switch name {
        case "vig_tiny": return ViGConfiguration(embedDim: 192, depth: 12, numHeads: 3, useActInConv: true, useOutAct: true)
        case "vig_small": return ViGConfiguration(embedDim: 384, depth: 12, numHeads: 6, useActInConv: false, useOutAct: false)
        case "vig_base": return ViGConfiguration(embedDim: 768, depth: 12, numHeads: 12, useActInConv: false, useOutAct: false)
        default: return nil
        }
    }

    public static let officialNames = ["vig_tiny", "vig_small", "vig_base"]
}

public struct ViG: ImageClassifier {
    static let rmsEps: Float = 1e-6
    static let stemEps: Float = 1e-5

    struct Block {
        let attnNorm: RMSNorm
        let attn: GatedLinearAttention2D
        let mlpNorm: RMSNorm
        let gateProj: Linear
        let downProj: Linear
    }

    public let configuration: ViGConfiguration
    let stemConv1: Conv2d
    let stemNorm1: LayerNorm
    let stemConv2: Conv2d
    let stemNorm2: LayerNorm
    /// pos_embed as [grid, grid, C].
    let positionEmbedding: [Float]
    let blocks: [Block]
    let norm: RMSNorm
    let head: Linear

    public var numClasses: Int { configuration.numClasses }

    /// Builds the network from official weights, each read where its layer is built, in `state_dict()` order.
    public init(configuration config: ViGConfiguration, weights: WeightReader) {
        precondition(config.valueDim == config.embedDim,
                     "ViG's local branch reshapes C channels into heads of d_v: needs expand_v = 1")
        configuration = config
        let c = config.embedDim, half = c / 2, k = config.patchSize / 2 + 1, stride = config.patchSize / 2
        positionEmbedding = weights("pos_embed", [1, config.positionGrid * config.positionGrid, c]).data
        let stem = weights.scope("patch_embed.proj")
        stemConv1 = Conv2d(torchWeight: stem("0.weight", [half, config.inChans, k, k]), bias: stem("0.bias", [half]),
                           stride: (stride, stride), padding: .symmetric(1))
        stemNorm1 = LayerNorm(weight: stem("1.weight", [half]), bias: stem("1.bias", [half]), eps: Self.stemEps)
        stemConv2 = Conv2d(torchWeight: stem("3.weight", [c, half, 3, 3]), bias: stem("3.bias", [c]),
                           stride: (2, 2), padding: .symmetric(1))
        stemNorm2 = LayerNorm(weight: stem("4.weight", [c]), bias: stem("4.bias", [c]), eps: Self.stemEps)
        head = Linear(weight: weights("head.weight", [config.numClasses, c]), bias: weights("head.bias", [config.numClasses]))
        blocks = (0..<config.depth).map { i in
            let block = weights.scope("blocks.\(i)")
            return Block(attnNorm: RMSNorm(weight: block("attn_norm.weight", [c]), eps: Self.rmsEps),
                         attn: GatedLinearAttention2D(block.scope("attn"), channels: c, heads: config.numHeads,
                                                      keyDim: config.keyDim, valueDim: config.valueDim,
                                                      actInConv: config.useActInConv, outAct: config.useOutAct,
                                                      outputScale: 0.25),
                         mlpNorm: RMSNorm(weight: block("mlp_norm.weight", [c]), eps: Self.rmsEps),
                         gateProj: Linear(weight: block("mlp.gate_proj.weight", [2 * config.mlpHidden, c]), bias: nil),
                         downProj: Linear(weight: block("mlp.down_proj.weight", [c, config.mlpHidden]), bias: nil))
        }
        norm = RMSNorm(weight: weights("norm.weight", [c]), eps: Self.rmsEps)
    }

    /// pos_embed for a token grid, [height·width·C]: as stored on the trained grid, else resized
    /// bicubically with align_corners=False (PyTorch `F.interpolate`, A = −0.75, clamped borders).
    func positions(height: Int, width: Int) -> [Float] {
        let g = configuration.positionGrid, c = configuration.embedDim
        if height == g && width == g { return positionEmbedding }
        return BicubicResize.channelsLast(positionEmbedding, inHeight: g, inWidth: g, channels: c,
                                          outHeight: height, outWidth: width)
    }

    /// Logits [N, classes] for NHWC input already normalised as the model expects.
    public func callAsFunction(_ input: Tensor) -> Tensor {
        precondition(input.rank == 4 && input.shape[3] == configuration.inChans,
                     "ViG expects NHWC with \(configuration.inChans) channels, got \(input.shape)")
        var x = stemNorm1(stemConv1(input))
        Activation.silu.apply(&x)
        x = stemNorm2(stemConv2(x))
        let (n, gh, gw, c) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let pos = positions(height: gh, width: gw)
        let perImage = gh * gw * c
        x.data.withUnsafeMutableBufferPointer { p in
            for image in 0..<n {
                let base = p.baseAddress! + image * perImage
                for i in 0..<perImage { base[i] += pos[i] }
            }
        }
        var tokens = x.reshaped([n * gh * gw, c])
        for block in blocks { tokens = run(block, tokens, images: n, height: gh, width: gw) }
        return head(Pooling.globalAverage(norm(tokens).reshaped([n, gh, gw, c])))
    }

    /// One GLABlock on tokens [N·H·W, C] (row-major raster order per image).
    func run(_ block: Block, _ x: Tensor, images n: Int, height gh: Int, width gw: Int) -> Tensor {
        var residual = block.attn(block.attnNorm(x), images: n, height: gh, width: gw)
        residual.add(x)
        // SwiGLU MLP on RMSNorm(x + attn): (gate, up) halves of gate_proj.
        var out = block.downProj(SwiGLU.gated(block.gateProj(block.mlpNorm(residual))))
        out.add(residual)
        return out
    }
}

/// The GLA token mixer shared by ViG (`GatedLinearAttention`) and ViG-H (`GLA2D`), eval branch, on
/// tokens [N·H·W, C] in row-major raster order (channels-last; ViG-H's Linear2d 1x1 convs are the same
/// GEMMs). Parameters of its module: in_proj.0 (3x3 depthwise, no bias), qkv_proj, gk_proj.{0,1},
/// o_proj, g_norm, l_norm, g_proj. Linear2d weights arrive already reshaped to [out, in].
struct GatedLinearAttention2D {
    static let rmsEps: Float = 1e-6
    /// `gate_logit_normalizer`: gates are logsigmoid(z) / 16.
    static let gateLogitNormalizer: Float = 16

    let inProj: Conv2d
    let qkvProj: Linear
    let gkProj0: Linear
    let gkProj1: Linear
    let oProj: Linear
    let gNorm: RMSNorm
    let lNorm: RMSNorm
    let gProj: Linear
    let heads: Int, keyDim: Int, valueDim: Int
    let actInConv: Bool, outAct: Bool
    /// What the bidirectional sum is multiplied by: the kernel's mean (1/2), times ViG's extra eval /2.
    let outputScale: Float

    init(_ module: WeightReader, channels c: Int, heads: Int, keyDim kd: Int, valueDim vd: Int,
         actInConv: Bool, outAct: Bool, outputScale: Float) {
        let r = ViGConfiguration.gateLowRankDim, w = module
        inProj = Conv2d(torchWeight: w("in_proj.0.weight", [c, 1, 3, 3]), bias: nil, padding: .symmetric(1), groups: c)
        qkvProj = Linear(weight: w("qkv_proj.weight", [2 * kd + vd, c]), bias: nil)
        gkProj0 = Linear(weight: w("gk_proj.0.weight", [r, c]), bias: nil)
        gkProj1 = Linear(weight: w("gk_proj.1.weight", [2 * kd, r]), bias: w("gk_proj.1.bias", [2 * kd]))
        oProj = Linear(weight: w("o_proj.weight", [c, vd]), bias: nil)
        gNorm = RMSNorm(weight: w("g_norm.weight", [vd / heads]), eps: Self.rmsEps)
        lNorm = RMSNorm(weight: w("l_norm.weight", [vd / heads]), eps: Self.rmsEps)
        gProj = Linear(weight: w("g_proj.weight", [vd, c]), bias: w("g_proj.bias", [vd]))
        self.heads = heads; self.keyDim = kd; self.valueDim = vd
        self.actInConv = actInConv; self.outAct = outAct; self.outputScale = outputScale
    }

    /// o_proj(y) for normalised tokens `normed` [N·H·W, C].
    func callAsFunction(_ normed: Tensor, images n: Int, height gh: Int, width gw: Int) -> Tensor {
        let rows = normed.shape[0], c = normed.shape[1]
        let kd = keyDim, vd = valueDim, dk = kd / heads, dv = vd / heads
        // Local branch: 3x3 depthwise conv; q, k, v, the gates and g all read it.
        let local = inProj(normed.reshaped([n, gh, gw, c]), activation: actInConv ? .silu : .identity)
            .reshaped([rows, c])
        let qkv = qkvProj(local)
        var gates = gkProj1(gkProj0(local))
        gates.data.withUnsafeMutableBufferPointer {
            GLA.logSigmoidGates($0.baseAddress!, count: $0.count, normalizer: Self.gateLogitNormalizer)
        }
        var o = Tensor(zeros: [rows, vd])
        let qkvStride = 2 * kd + vd
        qkv.data.withUnsafeBufferPointer { qp in
            gates.data.withUnsafeBufferPointer { gp in
                o.data.withUnsafeMutableBufferPointer { op in
                    let base = qp.baseAddress!, gbase = gp.baseAddress!
                    GLA.bidirectionalChunked(
                        batch: n, tokens: gh * gw, heads: heads, dk: dk, dv: dv,
                        q: .init(base, rowStride: qkvStride, headStride: dk),
                        k: .init(base + kd, rowStride: qkvStride, headStride: dk),
                        v: .init(base + 2 * kd, rowStride: qkvStride, headStride: dv),
                        forwardGates: .init(gbase, rowStride: 2 * kd, headStride: dk),
                        backwardGates: .init(gbase + kd, rowStride: 2 * kd, headStride: dk),
                        scale: 1 / Float(dk).squareRoot(), outputScale: outputScale, output: op.baseAddress!)
                }
            }
        }
        // y = RMSNorm_g(o) ⊙ g + RMSNorm_l(local) ⊙ (1 − g), per head (C = heads·d_v channels of local).
        let gated = gNorm(o.reshaped([rows * heads, dv])).reshaped([rows, vd])
        let localHeads = lNorm(local.reshaped([rows * heads, dv])).reshaped([rows, vd])
        var y = gProj(local, activation: .sigmoid)
        y.data.withUnsafeMutableBufferPointer { yp in
            gated.data.withUnsafeBufferPointer { op in
                localHeads.data.withUnsafeBufferPointer { lp in
                    for i in 0..<yp.count {
                        let g = yp[i]
                        yp[i] = op[i] * g + lp[i] * (1 - g)
                    }
                }
            }
        }
        if outAct { Activation.silu.apply(&y) }
        return oProj(y)
    }
}

/// SwiGLU on a [rows, 2·hidden] projection whose first half is the gate: SiLU(gate) ⊙ up.
enum SwiGLU {
    static func gated(_ gu: Tensor) -> Tensor {
        let rows = gu.count / gu.shape.last!, hidden = gu.shape.last! / 2
        var shape = gu.shape
        shape[shape.count - 1] = hidden
        return Tensor(uninitialized: shape) { out in
            gu.data.withUnsafeBufferPointer { gp in
                let src = UnsafeSendable(gp.baseAddress!), dst = UnsafeSendable(out.baseAddress!)
                Parallel.forEachChunk(rows, minChunk: 64) { range in
                    for r in range {
                        let s = src.value + r * 2 * hidden, d = dst.value + r * hidden
                        // SiLU through SluiceTensor's vectorised activation, then the up half.
                        d.update(from: s, count: hidden)
                        Activation.silu.apply(d, count: hidden)
                        for j in 0..<hidden { d[j] *= s[hidden + j] }
                    }
                }
            }
        }
    }
}

/// PyTorch's bicubic interpolation (`F.interpolate(mode='bicubic', align_corners=False)` with an output
/// size): source = (dst + 0.5)·in/out − 0.5, cubic convolution A = −0.75, indices clamped to the border.
enum BicubicResize {
    static func weights(_ t: Float) -> [Float] {
        let a: Float = -0.75
        func near(_ x: Float) -> Float { ((a + 2) * x - (a + 3)) * x * x + 1 }
        func far(_ x: Float) -> Float { ((a * x - 5 * a) * x + 8 * a) * x - 4 * a }
        return [far(t + 1), near(t), near(1 - t), far(2 - t)]
    }

    static func taps(_ inSize: Int, _ outSize: Int) -> [(index: [Int], weight: [Float])] {
        let scale = Float(inSize) / Float(outSize)
        return (0..<outSize).map { o in
            let src = scale * (Float(o) + 0.5) - 0.5
            let base = Int(src.rounded(.down))
            let t = src - Float(base)
            let index = (0..<4).map { Swift.min(Swift.max(base - 1 + $0, 0), inSize - 1) }
            return (index, weights(t))
        }
    }

    /// Resizes [inHeight, inWidth, channels] to [outHeight, outWidth, channels].
    static func channelsLast(_ input: [Float], inHeight: Int, inWidth: Int, channels: Int,
                             outHeight: Int, outWidth: Int) -> [Float] {
        let ty = taps(inHeight, outHeight), tx = taps(inWidth, outWidth)
        var out = [Float](repeating: 0, count: outHeight * outWidth * channels)
        var rowsX = [Float](repeating: 0, count: 4 * channels)
        for oy in 0..<outHeight {
            for ox in 0..<outWidth {
                // Interpolate along x in each of the four source rows, then along y (PyTorch's order).
                for r in 0..<4 {
                    let iy = ty[oy].index[r]
                    for ch in 0..<channels {
                        var v: Float = 0
                        for s in 0..<4 { v += input[(iy * inWidth + tx[ox].index[s]) * channels + ch] * tx[ox].weight[s] }
                        rowsX[r * channels + ch] = v
                    }
                }
                for ch in 0..<channels {
                    var v: Float = 0
                    for r in 0..<4 { v += rowsX[r * channels + ch] * ty[oy].weight[r] }
                    out[(oy * outWidth + ox) * channels + ch] = v
                }
            }
        }
        return out
    }
}

extension ModelRegistry {
    /// A ViG card: torchvision-style ImageNet preprocessing (Resize 256 bicubic, CenterCrop 224,
    /// ImageNet mean/std, as the official `data/build.py` evaluates).
    public static func vigCard(name: String, configuration config: ViGConfiguration) -> ModelCard {
        let labels = config.numClasses == 1000 ? LabelSet.imageNet1k : LabelSet(name: "classes\(config.numClasses)", labels: [])
        return ModelCard(name: name, family: "vig", reference: "classification/models/vig.py (github.com/hustvl/ViG)",
                         task: .imageClassification, input: .crop(.imageNet), labels: labels,
                         ignoredKeySuffixes: [], construct: { .classifier(ViG(configuration: config, weights: $0)) })
    }
}
