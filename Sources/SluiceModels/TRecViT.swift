// TRecViT (Pătrăucean et al., "TRecViT: A Recurrent Video Transformer"), following the official
// google-deepmind/trecvit `modules.py` (Apache-2.0) and the recurrentgemma JAX layers it imports
// (`ResidualBlock` with use_mlp=False, `RecurrentBlock`, `Conv1D`, `RGLRU` real-only,
// `BlockDiagonalLinear`, `RMSNorm`). Weights load from the official `.npz` unchanged: '/'-joined Flax
// paths in Flax layouts (Dense kernels [in, out], the patch Conv THWIO, attention [width, heads, dim]).
//
// Per frame: 16x16 patches → Dense + the shared `pos_embedding`, then a `cls` token in front. Each of
// `depth` layers runs
//   ① temporal, over each token's own time series (weights shared by the tokens):
//      n = RMSNorm(x)·(1 + scale); y = GELU_tanh(linear_y n); u = conv_1d(linear_x n) (causal, width 4,
//      w[3] on the current frame); r = σ(a_gate u), i = σ(input_gate u) (block-diagonal, one block per
//      head); log a = −8·r·softplus(a_param); h = a·h₋₁ + √(1 − a²)·(i·u), except at a clip's first
//      frame, where h = i·u (no decay, multiplier 1, and the conv sees nothing before it);
//      x += linear_out(h ⊙ y)
//   ② spatial, a ViT block over the frame's tokens: LN → MHSA → +; LN → MLP(GELU_tanh) → + (LN eps 1e-6).
// Then `encoder_norm`; the decoder averages tanh(pre_logits(cls)) over a clip's frames and applies
// `cls_head`; a video's logits are its clips' average.
//
// Time is mixed only by the causal recurrences, so a session steps one frame at a time with fixed state
// per layer (the RG-LRU state and the conv's last 3 inputs, per token): memory does not depend on the
// video's length, and every frame has a prediction (the clip's logits so far). Clip mode (the official
// forward) resets the state every `frames_per_clip` frames; stream mode never resets and predicts from
// the last `frames_per_clip` frames' decoder features.

import Foundation
import SluiceTensor

public struct TRecViTConfiguration: Codable, Sendable, Equatable {
    public enum Mode: String, Codable, Sendable, CaseIterable {
        /// The official forward: state reset at each clip start, a clip's prediction averages its frames.
        case clip
        /// Never reset; each frame's prediction averages the last `framesPerClip` frames' features.
        case stream
    }

    public var width: Int
    public var depth: Int
    public var mlpDim: Int
    public var numHeads: Int
    /// The RG-LRU's width (`state_multiplier` · width: 2 · width in the released model).
    public var lruWidth: Int
    public var convWidth: Int
    /// The decoder's `pre_logits` width.
    public var repSize: Int
    public var numClasses: Int
    public var patch: Int
    /// The patch grid the positional embedding was trained for (14x14: 224x224 frames).
    public var gridHeight: Int
    public var gridWidth: Int
    public var framesPerClip: Int
    public var mode: Mode

    enum CodingKeys: String, CodingKey {
        case width, depth, mlpDim = "mlp_dim", numHeads = "num_heads", lruWidth = "lru_width"
        case convWidth = "conv_width", repSize = "rep_size", numClasses = "num_classes", patch, grid
        case framesPerClip = "frames_per_clip", mode
    }

    public init(width: Int, depth: Int, mlpDim: Int, numHeads: Int, lruWidth: Int, convWidth: Int = 4,
                repSize: Int = 3072, numClasses: Int = 400, patch: Int = 16, gridHeight: Int = 14, gridWidth: Int = 14,
                framesPerClip: Int = 32, mode: Mode = .clip) {
        self.width = width; self.depth = depth; self.mlpDim = mlpDim; self.numHeads = numHeads
        self.lruWidth = lruWidth; self.convWidth = convWidth; self.repSize = repSize; self.numClasses = numClasses
        self.patch = patch; self.gridHeight = gridHeight; self.gridWidth = gridWidth
        self.framesPerClip = framesPerClip; self.mode = mode
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let grid = try c.decode([Int].self, forKey: .grid)
        self.init(width: try c.decode(Int.self, forKey: .width), depth: try c.decode(Int.self, forKey: .depth),
                  mlpDim: try c.decode(Int.self, forKey: .mlpDim), numHeads: try c.decode(Int.self, forKey: .numHeads),
                  lruWidth: try c.decode(Int.self, forKey: .lruWidth), convWidth: try c.decode(Int.self, forKey: .convWidth),
                  repSize: try c.decode(Int.self, forKey: .repSize), numClasses: try c.decode(Int.self, forKey: .numClasses),
                  patch: try c.decode(Int.self, forKey: .patch), gridHeight: grid[0], gridWidth: grid[1],
                  framesPerClip: try c.decodeIfPresent(Int.self, forKey: .framesPerClip) ?? 32,
                  mode: try c.decodeIfPresent(Mode.self, forKey: .mode) ?? .clip)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(width, forKey: .width); try c.encode(depth, forKey: .depth); try c.encode(mlpDim, forKey: .mlpDim)
        try c.encode(numHeads, forKey: .numHeads); try c.encode(lruWidth, forKey: .lruWidth)
        try c.encode(convWidth, forKey: .convWidth); try c.encode(repSize, forKey: .repSize)
        try c.encode(numClasses, forKey: .numClasses); try c.encode(patch, forKey: .patch)
        try c.encode([gridHeight, gridWidth], forKey: .grid); try c.encode(framesPerClip, forKey: .framesPerClip)
        try c.encode(mode, forKey: .mode)
    }

    /// `get_model(model_size)` for the widths of `decode_variant` (mu, Ti, S, M, B, L), with get_model's
    /// settings: conv width 4, state multiplier 2, rep size 3072, 224x224 frames, 32 frames per clip.
    public static func variant(_ name: String) -> TRecViTConfiguration? {
        let table: [String: (width: Int, depth: Int, mlp: Int, heads: Int)] = [
            "mu": (32, 1, 128, 2), "Ti": (192, 12, 768, 3), "S": (384, 12, 1536, 6),
            "M": (512, 12, 2048, 8), "B": (768, 12, 3072, 12), "L": (1024, 24, 4096, 16),
        ]
        guard let v = table[name] else { return nil }
        return TRecViTConfiguration(width: v.width, depth: v.depth, mlpDim: v.mlp, numHeads: v.heads, lruWidth: 2 * v.width)
    }

    /// Registered names and their official variant names; B is the released one.
    public static let officialNames: [(name: String, variant: String)] = [
        ("trecvit_mu", "mu"), ("trecvit_ti", "Ti"), ("trecvit_s", "S"), ("trecvit_m", "M"), ("trecvit_b", "B"),
        ("trecvit_l", "L"),
    ]

    /// The registered variant a checkpoint's widths and depth match ("trecvit_s (width 384, 12 layers)"),
    /// from its `tokenizer/cls` and encoder blocks.
    public static func recognize(_ tensors: [String: Tensor]) -> String? {
        guard let width = tensors["tokenizer/cls"]?.shape.last else { return nil }
        let depth = Set(tensors.keys.compactMap { key -> Int? in
            guard key.hasPrefix("encoder/encoderblock_") else { return nil }
            return Int(key.dropFirst("encoder/encoderblock_".count).prefix { $0 != "/" })
        }).count
        let layers = depth == 1 ? "1 layer" : "\(depth) layers"
        guard let match = officialNames.first(where: { variant($0.variant).map { $0.width == width && $0.depth == depth } ?? false })
        else { return "a TRecViT of width \(width) with \(layers), which is no registered variant" }
        return "\(match.name) (width \(width), \(layers))"
    }

    /// The settings `sluice infer --set` and pipelines may change: frames_per_clip and mode.
    public static let settingKeys = ["frames_per_clip", "mode"]

    /// This configuration with `key` set from text, or a one-line error naming what is allowed.
    public func setting(_ key: String, to value: String) throws -> TRecViTConfiguration {
        var copy = self
        switch key {
        case "frames_per_clip":
            guard let n = Int(value), n > 0 else { throw TRecViTError.badSetting("frames_per_clip=\(value): expected a positive whole number") }
            copy.framesPerClip = n
        case "mode":
            guard let mode = Mode(rawValue: value) else { throw TRecViTError.badSetting("mode=\(value): expected clip or stream") }
            copy.mode = mode
        default:
            throw TRecViTError.badSetting("unknown setting '\(key)' (TRecViT takes \(Self.settingKeys.joined(separator: ", ")))")
        }
        return copy
    }

    var tokens: Int { 1 + gridHeight * gridWidth }
    var headDim: Int { width / numHeads }
}

public enum TRecViTError: Error, CustomStringConvertible, Equatable {
    case frameTooSmall(width: Int, height: Int, patch: Int)
    case gridMismatch(width: Int, height: Int, grid: (Int, Int), expected: (Int, Int), patch: Int)
    case badInput(String)
    case badSetting(String)

    public var description: String {
        switch self {
        case .frameTooSmall(let w, let h, let p):
            return "frame \(w)x\(h) is smaller than one \(p)x\(p) patch"
        case .gridMismatch(let w, let h, let grid, let expected, let p):
            return "frame \(w)x\(h) makes a \(grid.1)x\(grid.0) grid of \(p)x\(p) patches; the model's positional "
                + "embedding is for \(expected.1)x\(expected.0) (\(expected.1 * p)x\(expected.0 * p) frames)"
        case .badInput(let text), .badSetting(let text):
            return text
        }
    }

    public static func == (a: TRecViTError, b: TRecViTError) -> Bool { a.description == b.description }
}

public struct TRecViT: StreamingVideoModel {
    public var configuration: TRecViTConfiguration
    let patchEmbedding: Linear        // [width, patch·patch·3], rows in (kh, kw, c) order
    let positions: [Float]            // [grid cells, width]
    let cls: [Float]                  // [width]
    let layers: [Layer]
    let encoderNorm: LayerNorm
    let preLogits: Linear
    let clsHead: Linear

    struct BlockDiagonal {
        let blocks: Int, inSize: Int, outSize: Int
        let weights: [Float]          // [blocks, out, in] (each block transposed for BLAS)
        let bias: [Float]             // [blocks · out]
    }

    struct Layer {
        // ① temporal (residualblock_NN)
        let normScale: [Float]        // 1 + scale
        let linearY: Linear, linearX: Linear, linearOut: Linear
        let convWeights: [Float]      // [convWidth, lruWidth]; the last row multiplies the current frame
        let convBias: [Float]
        let decayRate: [Float]        // 8 · softplus(a_param): log a = −decayRate · r
        let inputGate: BlockDiagonal, aGate: BlockDiagonal
        // ② spatial (encoderblock_N)
        let norm0: LayerNorm, norm1: LayerNorm
        let qkv: Linear               // [3 · width, width]: q, k, v, each head-major
        let attentionOut: Linear
        let mlp0: Linear, mlp1: Linear
    }

    /// Builds the model from the official Flax tree ('/'-separated keys, Flax shapes).
    public init(configuration c: TRecViTConfiguration, weights: WeightReader) {
        configuration = c
        let (w, lw, p) = (c.width, c.lruWidth, c.patch)
        let tokenizer = weights.scope("tokenizer")
        let kernel = tokenizer.scope("embedding")("kernel", [1, p, p, 3, w])
        patchEmbedding = Self.tall(Linear(weight: kernel.reshaped([p * p * 3, w]).permuted([1, 0]),
                                          bias: tokenizer.scope("embedding")("bias", [w])))
        positions = tokenizer("pos_embedding", [1, c.gridHeight * c.gridWidth, w]).data
        cls = tokenizer("cls", [1, 1, w]).data

        let encoder = weights.scope("encoder")
        layers = (0..<c.depth).map { i in
            let residual = encoder.scope(String(format: "residualblock_%02d", i))
            let scale = residual.scope("temporal_pre_norm")("scale", [w]).data
            let block = residual.scope("recurrent_block")
            let lru = block.scope("rg_lru")
            let aParam = lru("a_param", [lw]).data
            let spatial = encoder.scope("encoderblock_\(i)")
            let attention = spatial.scope("MultiHeadDotProductAttention_0")
            let heads = c.numHeads, dh = c.headDim
            let qkvKernels = ["query", "key", "value"].map { name in
                attention.scope(name)("kernel", [w, heads, dh]).reshaped([w, heads * dh]).permuted([1, 0]).data
            }
            let qkvBiases = ["query", "key", "value"].map { attention.scope($0)("bias", [heads, dh]).data }
            return Layer(
                normScale: scale.map { 1 + $0 },
                linearY: Self.dense(block.scope("linear_y"), w, lw),
                linearX: Self.dense(block.scope("linear_x"), w, lw),
                linearOut: Self.dense(block.scope("linear_out"), lw, w),
                convWeights: block.scope("conv_1d")("w", [c.convWidth, lw]).data,
                convBias: block.scope("conv_1d")("b", [lw]).data,
                decayRate: aParam.map { Float(8 * Self.softplus(Double($0))) },
                inputGate: Self.blockDiagonal(lru.scope("input_gate"), heads: heads, width: lw),
                aGate: Self.blockDiagonal(lru.scope("a_gate"), heads: heads, width: lw),
                norm0: Self.layerNorm(spatial.scope("LayerNorm_0"), w),
                norm1: Self.layerNorm(spatial.scope("LayerNorm_1"), w),
                qkv: Self.tall(Linear(weight: Tensor(shape: [3 * heads * dh, w], data: qkvKernels.flatMap { $0 }),
                                      bias: Tensor(shape: [3 * heads * dh], data: qkvBiases.flatMap { $0 }))),
                attentionOut: Self.tall(Linear(weight: attention.scope("out")("kernel", [heads, dh, w]).reshaped([heads * dh, w])
                                                  .permuted([1, 0]), bias: attention.scope("out")("bias", [w]))),
                mlp0: Self.dense(spatial.scope("MlpBlock_0").scope("Dense_0"), w, c.mlpDim),
                mlp1: Self.dense(spatial.scope("MlpBlock_0").scope("Dense_1"), c.mlpDim, w))
        }
        encoderNorm = Self.layerNorm(encoder.scope("encoder_norm"), w)
        let decoder = weights.scope("decoder")
        preLogits = Self.dense(decoder.scope("pre_logits"), w, c.repSize)
        clsHead = Self.dense(decoder.scope("cls_head"), c.repSize, c.numClasses)
    }

    /// A Flax Dense: kernel [in, out] (stored transposed for BLAS), bias [out].
    static func dense(_ r: WeightReader, _ inFeatures: Int, _ outFeatures: Int) -> Linear {
        tall(Linear(weight: r("kernel", [inFeatures, outFeatures]).permuted([1, 0]), bias: r("bias", [outFeatures])))
    }

    /// Row tiles of at least 2048: a step's few thousand token rows then take one or two tiles per thread,
    /// and OpenBLAS re-packs the wide weights that many times only (TRecViT-B, 8 frames: ~10% a frame).
    static func tall(_ linear: Linear) -> Linear {
        var tall = linear
        tall.minimumTileRows = 2048
        return tall
    }

    /// A Flax LayerNorm (eps 1e-6).
    static func layerNorm(_ r: WeightReader, _ width: Int) -> LayerNorm {
        LayerNorm(weight: r("scale", [width]), bias: r("bias", [width]), eps: 1e-6)
    }

    static func blockDiagonal(_ r: WeightReader, heads: Int, width: Int) -> BlockDiagonal {
        let size = width / heads
        let w = r("w", [heads, size, size]).permuted([0, 2, 1]).data
        return BlockDiagonal(blocks: heads, inSize: size, outSize: size, weights: w, bias: r("b", [heads, size]).data)
    }

    /// jax.nn.softplus: log(1 + eˣ), without overflow.
    static func softplus(_ x: Double) -> Double { x > 0 ? x + log1p(exp(-x)) : log1p(exp(x)) }

    public var numClasses: Int { configuration.numClasses }

    /// The same weights under other settings (frames per clip, mode).
    public func with(_ configuration: TRecViTConfiguration) -> TRecViT {
        var copy = self
        copy.configuration = configuration
        return copy
    }

    public func openSession(prompt: VideoPrompt) throws -> any VideoSession {
        guard prompt == .none else { throw TRecViTError.badInput("TRecViT takes no prompt") }
        return TRecViTSession(model: self, framesPerClip: configuration.framesPerClip, mode: configuration.mode)
    }

    /// The official clip forward over videos [N, T, H, W, 3] (values as the model takes them, [0, 1]):
    /// num_clips = max(T / frames_per_clip, 1) clips of T / num_clips frames each (T must divide, as the
    /// official rearrange requires). Returns the clip-averaged logits [N, classes], each frame's logits
    /// of its clip so far [N, T, classes], and each clip's logits [N, clips, classes].
    public func classify(videos: Tensor) throws -> (logits: Tensor, streaming: Tensor, clips: Tensor) {
        guard videos.rank == 5, videos.shape[4] == 3 else {
            throw TRecViTError.badInput("expected videos [N, T, H, W, 3], got \(videos.shape)")
        }
        let (n, t, h, w) = (videos.shape[0], videos.shape[1], videos.shape[2], videos.shape[3])
        guard t > 0 else { throw TRecViTError.badInput("a video needs at least one frame, got \(videos.shape)") }
        try checkFrame(width: w, height: h)
        let clipCount = max(t / configuration.framesPerClip, 1)
        guard t % clipCount == 0 else {
            throw TRecViTError.badInput("\(t) frames do not split into \(clipCount) equal clips (frames_per_clip="
                + "\(configuration.framesPerClip)); the official forward needs T divisible by T / frames_per_clip")
        }
        let clipLength = t / clipCount, classes = numClasses, frameSize = h * w * 3
        var logits = [Float](repeating: 0, count: n * classes)
        var streaming: [Float] = [], clips: [Float] = []
        streaming.reserveCapacity(n * t * classes); clips.reserveCapacity(n * clipCount * classes)
        for video in 0..<n {
            for clip in 0..<clipCount {
                let session = TRecViTSession(model: self, framesPerClip: clipLength, mode: .clip)
                // Several frames per step: the same values up to rounding, with larger matrix products.
                var frame = 0
                while frame < clipLength {
                    let count = min(Self.framesPerStep, clipLength - frame)
                    let inputs = (frame..<frame + count).map { index in
                        let start = ((video * t) + clip * clipLength + index) * frameSize
                        return Tensor(shape: [1, h, w, 3], data: Array(videos.data[start..<start + frameSize]))
                    }
                    for case .logits(let frameLogits, let finished) in try session.step(frames: inputs) {
                        streaming += frameLogits
                        if let finished {
                            clips += finished.logits
                            for k in 0..<classes { logits[video * classes + k] += finished.logits[k] / Float(clipCount) }
                        }
                    }
                    frame += count
                }
            }
        }
        return (Tensor(shape: [n, classes], data: logits), Tensor(shape: [n, t, classes], data: streaming),
                Tensor(shape: [n, clipCount, classes], data: clips))
    }

    /// Frames `classify` steps at once (measured on B: 4 frames' products run ~15% faster than one's, 8
    /// a few % faster again).
    static let framesPerStep = 8

    /// Throws unless a width x height frame makes exactly the positional embedding's patch grid (the
    /// official tokenizer's VALID conv drops a remainder of fewer than `patch` pixels).
    public func checkFrame(width: Int, height: Int) throws {
        let c = configuration
        guard width >= c.patch, height >= c.patch else {
            throw TRecViTError.frameTooSmall(width: width, height: height, patch: c.patch)
        }
        let grid = (height / c.patch, width / c.patch)
        guard grid == (c.gridHeight, c.gridWidth) else {
            throw TRecViTError.gridMismatch(width: width, height: height, grid: grid, expected: (c.gridHeight, c.gridWidth),
                                            patch: c.patch)
        }
    }
}

/// One video's pass through TRecViT: per layer the RG-LRU state and the conv's last inputs (for every
/// token), and the decoder's running features; their size is fixed at open. Several frames may be stepped
/// at once: every matrix product then covers all their tokens, and only the recurrences go frame by frame.
public final class TRecViTSession: VideoSession {
    let model: TRecViT
    let framesPerClip: Int
    let mode: TRecViTConfiguration.Mode
    /// `segment_pos` of the next frame: its place in its clip (clip mode) or in the video (stream mode).
    private var position = 0
    private var clipIndex = 0
    /// Frames stepped since the current clip (or, in stream mode, the current clip record) began.
    private var framesInClip = 0
    /// Per layer: the RG-LRU state [tokens, lru] and the conv's previous inputs [convWidth − 1][tokens, lru],
    /// oldest first.
    private var states: [[Float]]
    private var convTails: [[Float]]
    /// Decoder features tanh(pre_logits(cls)): their sum over the clip so far (clip mode), or the last
    /// `framesPerClip` of them in a ring (stream mode).
    private var featureSum: [Float]
    private var featureRing: [Float]

    init(model: TRecViT, framesPerClip: Int, mode: TRecViTConfiguration.Mode) {
        let c = model.configuration
        self.model = model; self.framesPerClip = max(1, framesPerClip); self.mode = mode
        let lane = c.tokens * c.lruWidth
        states = Array(repeating: [Float](repeating: 0, count: lane), count: c.depth)
        convTails = Array(repeating: [Float](repeating: 0, count: (c.convWidth - 1) * lane), count: c.depth)
        featureSum = [Float](repeating: 0, count: c.repSize)
        featureRing = mode == .stream ? [Float](repeating: 0, count: self.framesPerClip * c.repSize) : []
    }

    public func step(_ frame: Tensor) throws -> FrameOutput { try step(frames: [frame])[0] }

    /// Steps `frames` [1, H, W, 3] in order: one output per frame, as stepping them one by one gives (up
    /// to float rounding: the products' row tiling differs).
    public func step(frames: [Tensor]) throws -> [FrameOutput] {
        let c = model.configuration
        for frame in frames {
            guard frame.rank == 4, frame.shape[0] == 1, frame.shape[3] == 3 else {
                throw TRecViTError.badInput("expected a frame [1, H, W, 3], got \(frame.shape)")
            }
            try model.checkFrame(width: frame.shape[2], height: frame.shape[1])
        }
        guard !frames.isEmpty else { return [] }
        // segment_pos of each frame: 0 restarts the conv and the recurrence.
        let positions = frames.indices.map { mode == .clip ? (position + $0) % framesPerClip : position + $0 }
        var x = tokens(frames)
        for index in 0..<c.depth {
            temporal(index, &x, positions: positions)
            if index < c.depth - 1 { spatial(model.layers[index], &x, frames: frames.count) }
        }
        // The decoder reads only the cls tokens, so after the last layer's attention only their rows go on.
        let clsRows = lastSpatial(model.layers[c.depth - 1], x, frames: frames.count)
        var features = model.preLogits(model.encoderNorm(clsRows)).data
        for i in features.indices { features[i] = Foundation.tanh(features[i]) }

        // The decoder, frame by frame: each frame's average, and where a clip ends.
        var averages: [Float] = []
        averages.reserveCapacity(frames.count * c.repSize)
        var clipEnds: [Int?] = []
        for f in frames.indices {
            let feature = features[f * c.repSize..<(f + 1) * c.repSize]
            switch mode {
            case .clip:
                if positions[f] == 0 { featureSum.withUnsafeMutableBufferPointer { $0.update(repeating: 0) } }
                for (i, value) in feature.enumerated() { featureSum[i] += value }
                averages += featureSum.map { $0 / Float(positions[f] + 1) }
            case .stream:
                let slot = (positions[f] % framesPerClip) * c.repSize
                featureRing.replaceSubrange(slot..<slot + c.repSize, with: feature)
                let count = min(positions[f] + 1, framesPerClip)
                averages += ringAverage(count: count)
            }
            framesInClip += 1
            if framesInClip == framesPerClip {
                clipEnds.append(framesInClip)
                framesInClip = 0
            } else {
                clipEnds.append(nil)
            }
        }
        position = mode == .clip ? (position + frames.count) % framesPerClip : position + frames.count
        let logits = model.clsHead(Tensor(shape: [frames.count, c.repSize], data: averages)).data
        return frames.indices.map { f in
            let frameLogits = Array(logits[f * c.numClasses..<(f + 1) * c.numClasses])
            guard let count = clipEnds[f] else { return .logits(frameLogits) }
            defer { clipIndex += 1 }
            return .logits(frameLogits, clip: ClipLogits(index: clipIndex, frames: count, logits: frameLogits))
        }
    }

    /// The mean of the ring's first `count` features (stream mode).
    private func ringAverage(count: Int) -> [Float] {
        let width = model.configuration.repSize
        var sum = [Float](repeating: 0, count: width)
        for k in 0..<count { for i in 0..<width { sum[i] += featureRing[k * width + i] } }
        return sum.map { $0 / Float(count) }
    }

    /// The clip the video's end cut short, if any frames of it were stepped.
    public func finish() -> ClipLogits? {
        guard framesInClip > 0 else { return nil }
        let c = model.configuration
        let average = mode == .clip ? featureSum.map { $0 / Float(framesInClip) } : ringAverage(count: min(position, framesPerClip))
        let logits = model.clsHead(Tensor(shape: [1, c.repSize], data: average)).data
        let clip = ClipLogits(index: clipIndex, frames: framesInClip, logits: logits)
        framesInClip = 0
        return clip
    }

    /// The frames' tokens [frames · (1 + grid), width]: per frame cls, then each patch's embedding plus
    /// its position.
    private func tokens(_ frames: [Tensor]) -> Tensor {
        let c = model.configuration
        let (p, gh, gw) = (c.patch, c.gridHeight, c.gridWidth)
        let patchSize = p * p * 3, cells = gh * gw
        let patches = Tensor(uninitialized: [frames.count * cells, patchSize]) { out in
            for (f, frame) in frames.enumerated() {
                let width = frame.shape[2]
                frame.data.withUnsafeBufferPointer { src in
                    for gy in 0..<gh {
                        for gx in 0..<gw {
                            let row = out.baseAddress! + (f * cells + gy * gw + gx) * patchSize
                            for ky in 0..<p {
                                let from = src.baseAddress! + ((gy * p + ky) * width + gx * p) * 3
                                (row + ky * p * 3).update(from: from, count: p * 3)
                            }
                        }
                    }
                }
            }
        }
        let embedded = model.patchEmbedding(patches)
        var data: [Float] = []
        data.reserveCapacity(frames.count * c.tokens * c.width)
        for f in frames.indices {
            data += model.cls
            let base = f * cells * c.width
            for i in 0..<cells * c.width { data.append(embedded.data[base + i] + model.positions[i]) }
        }
        return Tensor(shape: [frames.count * c.tokens, c.width], data: data)
    }

    /// ① residualblock over each token's time series: x += linear_out(RG-LRU(conv(linear_x n)) ⊙
    /// GELU(linear_y n)), n = RMSNorm(x). Rows are frame-major; the conv and the recurrence walk the
    /// frames in order, restarting where `positions` is 0.
    private func temporal(_ index: Int, _ x: inout Tensor, positions: [Int]) {
        let c = model.configuration, layer = model.layers[index]
        let normed = RMSNorm(weight: Tensor(shape: [c.width], data: layer.normScale), eps: 1e-6)(x)
        let y = layer.linearY(normed, activation: .geluTanh)
        var u = layer.linearX(normed)
        let (tokens, lw, taps, frameCount) = (c.tokens, c.lruWidth, c.convWidth, positions.count)
        let lane = tokens * lw
        let restart = positions.map { $0 == 0 }
        var conv = [Float](repeating: 0, count: frameCount * lane)
        convTails[index].withUnsafeMutableBufferPointer { tail in
            u.data.withUnsafeBufferPointer { current in
                conv.withUnsafeMutableBufferPointer { out in
                    layer.convWeights.withUnsafeBufferPointer { w in
                        layer.convBias.withUnsafeBufferPointer { b in
                            Recurrences.causalConv(frames: frameCount, rows: tokens, channels: lw, taps: taps, restart: restart,
                                                   input: current.baseAddress!, tail: tail.baseAddress!, weights: w.baseAddress!,
                                                   bias: b.baseAddress!, output: out.baseAddress!)
                        }
                    }
                }
            }
        }
        let gateX = blockDiagonal(layer.inputGate, conv, rows: frameCount * tokens)
        let gateA = blockDiagonal(layer.aGate, conv, rows: frameCount * tokens)
        // RG-LRU: h = a·h + √(1 − a²)·(i·u), or h = i·u at segment_pos 0; then h ⊙ y (into u's storage).
        states[index].withUnsafeMutableBufferPointer { h in
            u.data.withUnsafeMutableBufferPointer { gated in
                conv.withUnsafeBufferPointer { cv in
                    gateX.withUnsafeBufferPointer { gx in
                        gateA.withUnsafeBufferPointer { ga in
                            y.data.withUnsafeBufferPointer { yp in
                                layer.decayRate.withUnsafeBufferPointer { rate in
                                    Recurrences.rgLRU(frames: frameCount, rows: tokens, channels: lw, restart: restart,
                                                      state: h.baseAddress!, x: cv.baseAddress!, gateX: gx.baseAddress!,
                                                      gateA: ga.baseAddress!, rate: rate.baseAddress!, y: yp.baseAddress!,
                                                      output: gated.baseAddress!)
                                }
                            }
                        }
                    }
                }
            }
        }
        let out = layer.linearOut(u)
        x.data.withUnsafeMutableBufferPointer { xp in
            out.data.withUnsafeBufferPointer { op in for i in 0..<xp.count { xp[i] += op[i] } }
        }
    }

    /// σ(block-diagonal linear) of `input` [rows, blocks · inSize].
    private func blockDiagonal(_ gate: TRecViT.BlockDiagonal, _ input: [Float], rows: Int) -> [Float] {
        let width = gate.blocks * gate.outSize, inWidth = gate.blocks * gate.inSize
        var out = [Float](repeating: 0, count: rows * width)
        input.withUnsafeBufferPointer { a in
            gate.weights.withUnsafeBufferPointer { w in
                gate.bias.withUnsafeBufferPointer { b in
                    out.withUnsafeMutableBufferPointer { o in
                        for block in 0..<gate.blocks {
                            BLAS.gemm(m: rows, n: gate.outSize, k: gate.inSize, a: a.baseAddress! + block * gate.inSize,
                                      lda: inWidth, b: w.baseAddress! + block * gate.outSize * gate.inSize, ldb: gate.inSize,
                                      c: o.baseAddress! + block * gate.outSize, ldc: width,
                                      epilogue: .bias(b.baseAddress! + block * gate.outSize, activation: .sigmoid),
                                      minimumTileRows: 2048)
                        }
                    }
                }
            }
        }
        return out
    }

    /// ② encoderblock, each frame's tokens attending among themselves: x += MHSA(LN₀ x); x += MLP(LN₁ x).
    private func spatial(_ layer: TRecViT.Layer, _ x: inout Tensor, frames: Int) {
        let attended = attention(layer, x, frames: frames)
        let projected = layer.attentionOut(attended)
        x.data.withUnsafeMutableBufferPointer { xp in
            projected.data.withUnsafeBufferPointer { pp in for i in 0..<xp.count { xp[i] += pp[i] } }
        }
        let mlp = layer.mlp1(layer.mlp0(layer.norm1(x), activation: .geluTanh))
        x.data.withUnsafeMutableBufferPointer { xp in
            mlp.data.withUnsafeBufferPointer { mp in for i in 0..<xp.count { xp[i] += mp[i] } }
        }
    }

    /// The last encoderblock for the cls rows alone [frames, width]: every token still feeds the
    /// attention, but only cls outputs reach the decoder.
    private func lastSpatial(_ layer: TRecViT.Layer, _ x: Tensor, frames: Int) -> Tensor {
        let c = model.configuration
        let attended = attention(layer, x, frames: frames)
        func clsRows(_ t: Tensor) -> Tensor {
            Tensor(shape: [frames, c.width], data: (0..<frames).flatMap { f in
                t.data[f * c.tokens * c.width..<(f * c.tokens + 1) * c.width]
            })
        }
        var cls = clsRows(x)
        let projected = layer.attentionOut(clsRows(attended))
        for i in 0..<cls.count { cls.data[i] += projected.data[i] }
        let mlp = layer.mlp1(layer.mlp0(layer.norm1(cls), activation: .geluTanh))
        for i in 0..<cls.count { cls.data[i] += mlp.data[i] }
        return cls
    }

    /// Multi-head self-attention of each frame's tokens (before the output projection): [frames · tokens, width].
    private func attention(_ layer: TRecViT.Layer, _ x: Tensor, frames: Int) -> Tensor {
        Attention.selfAttention(packed: layer.qkv(layer.norm0(x)), sequences: frames, length: model.configuration.tokens,
                                heads: model.configuration.numHeads)
    }
}

extension LoadedModel {
    /// The model with its clip settings replaced where given (a model that is no TRecViT: unchanged).
    public func settingVideo(framesPerClip: Int?, mode: TRecViTConfiguration.Mode?) -> LoadedModel {
        guard framesPerClip != nil || mode != nil, case .streamingVideo(let model) = self,
              let trecvit = model as? TRecViT else { return self }
        var configuration = trecvit.configuration
        if let framesPerClip { configuration.framesPerClip = framesPerClip }
        if let mode { configuration.mode = mode }
        return .streamingVideo(trecvit.with(configuration))
    }
}
