// ViG-H, the hierarchical ViG, following the official `classification/models/vig_h.py` (class HierViG) of
// hustvl/ViG as the `configs/vig-h/*.yaml` files build it (NORM_LAYER ln2d, so channels-first throughout;
// PATCHEMBED v2; DOWNSAMPLE v3; GMLP; USE_ACT_IN_CONV / USE_OUT_ACT off). Module names of the checkpoints:
//   patch_embed.{0: Conv2d k=p/2+1 s=p/2 p=1, 2: LayerNorm2d, (4: GELU), 5: Conv2d k=p/2+1 s=p/2 p=1, 7: LayerNorm2d},
//   layers.s.blocks.j.{norm, op.{in_proj.0, qkv_proj, gk_proj.{0,1}, o_proj, g_norm, l_norm, g_proj}, norm2,
//                      mlp.{fc1, fc2}},
//   layers.s.downsample.{1: Conv2d 3x3/2 p=1, 3: LayerNorm2d} (every stage but the last, after its blocks),
//   classifier.{norm: LayerNorm2d, head}.
// A block (`VSSBlock`, pre-norm): x += GLA2D(LN(x)); x += fc2(SiLU(gate) ⊙ up) with (gate, up) = fc1(LN(x)).
// GLA2D is ViG's mixer (`GatedLinearAttention2D`) except that the eval path keeps the kernel's
// (o_fwd + o_bwd) / 2 (its `o /= 2` is commented out). qkv_proj, gk_proj, g_proj, fc1 and fc2 are Linear2d
// (1x1 convs holding [out, in] weights; [out, in, 1, 1] loads too); o_proj is a plain Linear. Every
// LayerNorm2d has eps 1e-5 (nn.LayerNorm's default), every RMSNorm 1e-6 (GLAConfig.rms_norm_eps).
// gMlp's hidden size is 32·ceil(int(8·d/3)/32). There is no position embedding, so any input size works.

import Foundation
import SluiceTensor

public struct ViGHConfiguration: Codable, Sendable, Equatable {
    public var dims: [Int]
    public var depths: [Int]
    public var numHeads: [Int]
    public var expandK: Double
    public var expandV: Double
    /// `PATCH_SIZE`: the stem's total stride (two convolutions of stride patch/2).
    public var patchSize: Int
    /// `USE_ACT_IN_CONV`: SiLU after the 3x3 depthwise conv (config.py default on; the ViG-H yamls turn it off).
    public var useActInConv: Bool
    /// `USE_OUT_ACT`: SiLU before o_proj.
    public var useOutAct: Bool
    public var numClasses: Int
    public var inChans: Int

    enum CodingKeys: String, CodingKey {
        case dims, depths, numHeads = "num_heads", expandK = "expand_k", expandV = "expand_v"
        case patchSize = "patch_size", useActInConv = "use_act_in_conv", useOutAct = "use_out_act"
        case numClasses = "num_classes", inChans = "in_chans"
    }

    public init(dims: [Int], depths: [Int], numHeads: [Int], expandK: Double = 0.5, expandV: Double = 1,
                patchSize: Int = 4, useActInConv: Bool = false, useOutAct: Bool = false,
                numClasses: Int = 1000, inChans: Int = 3) {
        precondition(dims.count == depths.count && dims.count == numHeads.count, "one dim, depth and head count per stage")
        self.dims = dims; self.depths = depths; self.numHeads = numHeads
        self.expandK = expandK; self.expandV = expandV; self.patchSize = patchSize
        self.useActInConv = useActInConv; self.useOutAct = useOutAct
        self.numClasses = numClasses; self.inChans = inChans
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(dims: try c.decode([Int].self, forKey: .dims), depths: try c.decode([Int].self, forKey: .depths),
                  numHeads: try c.decode([Int].self, forKey: .numHeads),
                  expandK: try c.decodeIfPresent(Double.self, forKey: .expandK) ?? 0.5,
                  expandV: try c.decodeIfPresent(Double.self, forKey: .expandV) ?? 1,
                  patchSize: try c.decodeIfPresent(Int.self, forKey: .patchSize) ?? 4,
                  useActInConv: try c.decode(Bool.self, forKey: .useActInConv),
                  useOutAct: try c.decode(Bool.self, forKey: .useOutAct),
                  numClasses: try c.decodeIfPresent(Int.self, forKey: .numClasses) ?? 1000,
                  inChans: try c.decodeIfPresent(Int.self, forKey: .inChans) ?? 3)
    }

    public func keyDim(_ stage: Int) -> Int { Int(Double(dims[stage]) * expandK) }
    public func valueDim(_ stage: Int) -> Int { Int(Double(dims[stage]) * expandV) }
    /// gMlp's hidden size: 32·ceil(int(d·4·2/3)/32).
    public func mlpHidden(_ stage: Int) -> Int {
        let raw = Int(Double(dims[stage] * 4 * 2) / 3)
        return 32 * ((raw + 31) / 32)
    }

    /// `vig_h_tiny`, `vig_h_small`, `vig_h_base` (configs/vig-h/vig-h-{t,s,b}.yaml).
    public static func named(_ name: String) -> ViGHConfiguration? {
        switch name {
        case "vig_h_tiny": return ViGHConfiguration(dims: [96, 192, 384, 768], depths: [2, 2, 5, 2], numHeads: [3, 6, 12, 24])
        case "vig_h_small": return ViGHConfiguration(dims: [96, 192, 384, 768], depths: [2, 2, 17, 2], numHeads: [3, 6, 12, 24])
        case "vig_h_base": return ViGHConfiguration(dims: [128, 256, 512, 1024], depths: [2, 2, 17, 2], numHeads: [4, 8, 16, 32])
        default: return nil
        }
    }

    public static let officialNames = ["vig_h_tiny", "vig_h_small", "vig_h_base"]
}

public struct ViGH: ImageClassifier, ImageBackbone {
    static let layerNormEps: Float = 1e-5

    struct Block {
        let norm: LayerNorm
        let op: GatedLinearAttention2D
        let norm2: LayerNorm
        let fc1: Linear
        let fc2: Linear
    }

    struct Stage {
        let blocks: [Block]
        /// Conv 3x3/2 and LayerNorm2d into the next stage's width; nil for the last stage.
        let downsample: (conv: Conv2d, norm: LayerNorm)?
    }

    public let configuration: ViGHConfiguration
    let stemConv1: Conv2d
    let stemNorm1: LayerNorm
    let stemConv2: Conv2d
    let stemNorm2: LayerNorm
    let stages: [Stage]
    let classifierNorm: LayerNorm
    let head: Linear

    public var numClasses: Int { configuration.numClasses }

    /// Linear2d modules: their weights may be stored conv-shaped, [out, in, 1, 1].
    static let linear2dSuffixes = ["op.qkv_proj.weight", "op.gk_proj.0.weight", "op.gk_proj.1.weight",
                                   "op.g_proj.weight", "mlp.fc1.weight", "mlp.fc2.weight"]

    /// Official key names from a checkpoint as HierViG loads it (after the card strips DataParallel's
    /// `module.`): `HierViG._load_from_state_dict`'s renames of the previous training code's names (prefix
    /// matches, in its order: patch_embed.proj → patch_embed.0, patch_embed.norm → patch_embed.2,
    /// layers.i.blocks.j.ln_1 → .norm, .self_attention → .op, norm → classifier.norm, head →
    /// classifier.head), and Linear2d weights viewed as [out, in] (`Linear2d._load_from_state_dict`).
    public static func sanitize(_ stateDict: StateDict) throws -> StateDict {
        func renamed(_ key: String) -> String {
            var key = key
            func change(_ source: String, _ destination: String) {
                if key.hasPrefix(source) { key = destination + key.dropFirst(source.count) }
            }
            change("patch_embed.proj", "patch_embed.0")
            change("patch_embed.norm", "patch_embed.2")
            let parts = key.split(separator: ".", omittingEmptySubsequences: false)
            if parts.count > 4, parts[0] == "layers", parts[2] == "blocks",
               let i = Int(parts[1]), let j = Int(parts[3]), (0..<100).contains(i), (0..<100).contains(j) {
                change("layers.\(i).blocks.\(j).ln_1", "layers.\(i).blocks.\(j).norm")
                change("layers.\(i).blocks.\(j).self_attention", "layers.\(i).blocks.\(j).op")
            }
            change("norm", "classifier.norm")
            change("head", "classifier.head")
            return key
        }
        var dict = try stateDict.renamingKeys { renamed($0) }
        for (key, t) in dict.orderedTensors where linear2dSuffixes.contains(where: { key.hasSuffix($0) }) {
            if t.rank == 4 && t.shape[2] == 1 && t.shape[3] == 1 {
                dict.set(t.reshaped([t.shape[0], t.shape[1]]), forKey: key, dtype: dict.dtypes[key] ?? .f32)
            }
        }
        return dict
    }

    /// Builds the network from official weights, each read where its layer is built, in `state_dict()` order.
    public init(configuration config: ViGHConfiguration, weights: WeightReader) {
        for s in config.dims.indices {
            precondition(config.valueDim(s) == config.dims[s],
                         "GLA2D's local branch reshapes C channels into heads of d_v: needs expand_v = 1")
        }
        configuration = config
        let d0 = config.dims[0], half = d0 / 2, k = config.patchSize / 2 + 1, stride = config.patchSize / 2
        let stem = weights.scope("patch_embed")
        stemConv1 = Conv2d(torchWeight: stem("0.weight", [half, config.inChans, k, k]), bias: stem("0.bias", [half]),
                           stride: (stride, stride), padding: .symmetric(1))
        stemNorm1 = LayerNorm(weight: stem("2.weight", [half]), bias: stem("2.bias", [half]), eps: Self.layerNormEps)
        stemConv2 = Conv2d(torchWeight: stem("5.weight", [d0, half, k, k]), bias: stem("5.bias", [d0]),
                           stride: (stride, stride), padding: .symmetric(1))
        stemNorm2 = LayerNorm(weight: stem("7.weight", [d0]), bias: stem("7.bias", [d0]), eps: Self.layerNormEps)
        /// The LayerNorm `module` over `channels`.
        func layerNorm(_ module: WeightReader, _ channels: Int) -> LayerNorm {
            LayerNorm(weight: module("weight", [channels]), bias: module("bias", [channels]), eps: Self.layerNormEps)
        }
        stages = config.dims.indices.map { s in
            let d = config.dims[s], hidden = config.mlpHidden(s), layer = weights.scope("layers.\(s)")
            let blocks = (0..<config.depths[s]).map { j -> Block in
                let block = layer.scope("blocks.\(j)")
                return Block(norm: layerNorm(block.scope("norm"), d),
                             op: GatedLinearAttention2D(block.scope("op"), channels: d, heads: config.numHeads[s],
                                                        keyDim: config.keyDim(s), valueDim: config.valueDim(s),
                                                        actInConv: config.useActInConv, outAct: config.useOutAct,
                                                        outputScale: 0.5),
                             norm2: layerNorm(block.scope("norm2"), d),
                             fc1: Linear(weight: block("mlp.fc1.weight", [2 * hidden, d]), bias: nil),
                             fc2: Linear(weight: block("mlp.fc2.weight", [d, hidden]), bias: nil))
            }
            guard s + 1 < config.dims.count else { return Stage(blocks: blocks, downsample: nil) }
            let next = config.dims[s + 1], down = layer.scope("downsample")
            return Stage(blocks: blocks,
                         downsample: (Conv2d(torchWeight: down("1.weight", [next, d, 3, 3]), bias: down("1.bias", [next]),
                                             stride: (2, 2), padding: .symmetric(1)),
                                      layerNorm(down.scope("3"), next)))
        }
        let last = config.dims[config.dims.count - 1]
        classifierNorm = layerNorm(weights.scope("classifier.norm"), last)
        head = Linear(weight: weights("classifier.head.weight", [config.numClasses, last]),
                      bias: weights("classifier.head.bias", [config.numClasses]))
    }

    /// Logits [N, classes] for NHWC input already normalised as the model expects.
    public func callAsFunction(_ input: Tensor) -> Tensor {
        head(Pooling.globalAverage(classifierNorm(runStages(input, keep: nil))))
    }

    /// Channels of the stages' outputs.
    public var stageChannels: [Int] { configuration.dims }

    /// Each stage's output after its blocks, before its downsampling: [N, H/4, W/4, dims[0]] and so on.
    public func features(_ input: Tensor) -> [Tensor] {
        var outputs: [Tensor] = []
        _ = runStages(input) { outputs.append($0) }
        return outputs
    }

    /// The stem and the stages, handing each stage's block output to `keep`; the last stage's output.
    func runStages(_ input: Tensor, keep: ((Tensor) -> Void)?) -> Tensor {
        precondition(input.rank == 4 && input.shape[3] == configuration.inChans,
                     "ViG-H expects NHWC with \(configuration.inChans) channels, got \(input.shape)")
        var x = stemNorm1(stemConv1(input))
        Activation.gelu.apply(&x)
        x = stemNorm2(stemConv2(x))
        for stage in stages {
            let (n, h, w, c) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
            var tokens = x.reshaped([n * h * w, c])
            for block in stage.blocks { tokens = run(block, tokens, images: n, height: h, width: w) }
            x = tokens.reshaped([n, h, w, c])
            keep?(x)
            if let down = stage.downsample { x = down.norm(down.conv(x)) }
        }
        return x
    }

    /// One VSSBlock on tokens [N·H·W, C] (row-major raster order per image).
    func run(_ block: Block, _ x: Tensor, images n: Int, height h: Int, width w: Int) -> Tensor {
        var mixed = block.op(block.norm(x), images: n, height: h, width: w)
        mixed.add(x)
        var out = block.fc2(SwiGLU.gated(block.fc1(block.norm2(mixed))))
        out.add(mixed)
        return out
    }
}

extension ModelRegistry {
    /// A ViG-H card: torchvision-style ImageNet preprocessing (Resize 256 bicubic, CenterCrop 224,
    /// ImageNet mean/std, as the official `data/build.py` evaluates).
    public static func vigHCard(name: String, configuration config: ViGHConfiguration) -> ModelCard {
        let labels = config.numClasses == 1000 ? LabelSet.imageNet1k : LabelSet(name: "classes\(config.numClasses)", labels: [])
        return ModelCard(name: name, family: "vig_h", reference: "classification/models/vig_h.py (github.com/hustvl/ViG)",
                         task: .imageClassification, input: .crop(.imageNet), labels: labels,
                         ignoredKeySuffixes: [], construct: { .classifier(ViGH(configuration: config, weights: $0)) },
                         normalizeKeys: { try ViGH.sanitize($0) })
    }
}
