// HorNet (Rao et al., "HorNet: Efficient High-Order Spatial Interactions with Recursive Gated
// Convolutions", NeurIPS 2022), following the official `hornet.py` of raoyongming/HorNet (MIT), whose
// module names the released checkpoints use:
//   downsample_layers.0.{0: Conv2d 4x4/4, 1: LayerNorm channels_first}, downsample_layers.{1,2,3}.{0: LN, 1: Conv2d 2x2/2},
//   stages.S.J.{gamma1, gamma2, norm1, gnconv.{proj_in, dwconv, pws.K, proj_out}, norm2, pwconv1, pwconv2},
//   norm, head; the global-filter variants' dwconv is GlobalLocalFilter {complex_weight, dw, pre_norm, post_norm}.
// mmpretrain's re-release (tools/model_converters/hornet2mmpretrain.py) renames these keys; `sanitize` maps
// them back. Every LayerNorm has eps 1e-6 and a biased variance; a channels_first LayerNorm normalises the
// channel axis, which in NHWC is the last axis. At load time the gnConv scale s = 1/3 is folded into the
// 7x7 depthwise weights (or the global filter's post_norm) and the layer scales gamma1/gamma2 into
// proj_out and pwconv2, whose GEMMs then accumulate straight into the residual stream.

import Foundation
import SluiceTensor

public struct HorNetConfiguration: Codable, Sendable, Equatable {
    /// `GlobalLocalFilter(dim, h, w)`: the size of `complex_weight` (h, w = H/2 + 1 of its native grid).
    public struct GlobalFilter: Codable, Sendable, Equatable {
        public var h: Int, w: Int
        public init(h: Int, w: Int) { self.h = h; self.w = w }
    }

    /// `base_dim`: stage widths are base_dim · [1, 2, 4, 8].
    public var baseDim: Int
    public var depths: [Int]
    /// gnConv `order` of each stage.
    public var orders: [Int]
    /// `gflayer` of each stage: nil for the 7x7 depthwise convolution, else the global filter's size.
    public var gflayer: [GlobalFilter?]
    /// gnConv scale `s`.
    public var s: Double
    public var numClasses: Int
    public var inChans: Int
    /// The input side the model was trained at (224).
    public var imageSize: Int

    enum CodingKeys: String, CodingKey {
        case baseDim = "base_dim", depths, orders, gflayer, s, numClasses = "num_classes", inChans = "in_chans"
        case imageSize = "image_size"
    }

    public init(baseDim: Int, depths: [Int], orders: [Int], gflayer: [GlobalFilter?], s: Double = 1.0 / 3.0,
                numClasses: Int = 1000, inChans: Int = 3, imageSize: Int = 224) {
        precondition(depths.count == 4 && orders.count == 4 && gflayer.count == 4, "HorNet has four stages")
        self.baseDim = baseDim; self.depths = depths; self.orders = orders; self.gflayer = gflayer
        self.s = s; self.numClasses = numClasses; self.inChans = inChans; self.imageSize = imageSize
    }

    public var dims: [Int] { (0..<4).map { baseDim << $0 } }

    /// gnConv channel split of a stage: dims = [C / 2^(order-1), …, C / 2, C].
    public static func gnconvDims(_ dim: Int, order: Int) -> [Int] { (0..<order).map { dim >> $0 }.reversed() }

    /// The official constructors `hornet_{tiny,small,base,large}_{7x7,gf}` (224 input). The released
    /// HorNet-L weights are ImageNet-22k classifiers (21841 classes).
    public static func named(_ name: String) -> HorNetConfiguration? {
        let parts = name.split(separator: "_")
        guard parts.count == 3, parts[0] == "hornet",
              let base = ["tiny": 64, "small": 96, "base": 128, "large": 192][String(parts[1])],
              parts[2] == "7x7" || parts[2] == "gf" else { return nil }
        let gf: [GlobalFilter?] = parts[2] == "gf" ? [nil, nil, .init(h: 14, w: 8), .init(h: 7, w: 4)] : [nil, nil, nil, nil]
        return HorNetConfiguration(baseDim: base, depths: [2, 3, 18, 2], orders: [2, 3, 4, 5], gflayer: gf,
                                   numClasses: parts[1] == "large" ? 21841 : 1000)
    }

    public static let officialNames = ["tiny", "small", "base", "large"].flatMap { size in
        ["7x7", "gf"].map { "hornet_\(size)_\($0)" }
    }
}

public struct HorNet: ImageClassifier, ImageBackbone {
    static let eps: Float = 1e-6

    struct Norm {
        var weight: [Float], bias: [Float]
        /// The LayerNorm `module` over `channels`, both its parameters multiplied by `scale`.
        init(_ module: WeightReader, _ channels: Int, scale: Float = 1) {
            weight = module("weight", [channels]).data.map { $0 * scale }
            bias = module("bias", [channels]).data.map { $0 * scale }
        }
    }

    /// A 1x1 convolution or linear layer: weight [out, in] (PyTorch layout, multiplied as B^T), bias [out].
    struct Dense {
        var weight: [Float], bias: [Float]
        var outFeatures: Int { bias.count }
        var inFeatures: Int { weight.count / bias.count }
        /// The layer `module` with weight `shape` ([out, in] or [out, in, 1, 1]); `scale` (a layer scale)
        /// multiplies output channel o of both weight and bias.
        init(_ module: WeightReader, _ shape: [Int], scale: [Float]? = nil) {
            weight = module("weight", shape).data
            bias = module("bias", [shape[0]]).data
            if let scale {
                let perOutput = weight.count / bias.count
                for o in 0..<bias.count {
                    bias[o] *= scale[o]
                    for i in 0..<perOutput { weight[o * perOutput + i] *= scale[o] }
                }
            }
        }
    }

    struct GlobalLocalFilter {
        let dw: Conv2d
        /// complex_weight as stored, [C/2, h, w, 2].
        let complexWeight: [Float]
        let h: Int, w: Int
        /// complex_weight as [h, w, C/2] planes (channel innermost) for the native grid.
        let nativeRe: [Float], nativeIm: [Float]
        let preNorm: Norm
        /// post_norm with the gnConv scale folded in.
        let postNorm: Norm

        var halfChannels: Int { complexWeight.count / (2 * h * w) }

        /// Real and imaginary planes [H, W/2+1, C/2] for a feature grid (resized bilinearly with
        /// align_corners=True when it differs from the stored size, as the official forward does).
        func planes(height: Int, frequencyWidth wf: Int) -> ([Float], [Float]) {
            if height == h && wf == w { return (nativeRe, nativeIm) }
            let c2 = halfChannels
            // weight.permute(3, 0, 1, 2): [2, C/2, h, w] planes.
            var split = [Float](repeating: 0, count: 2 * c2 * h * w)
            for c in 0..<c2 {
                for i in 0..<(h * w) {
                    split[c * h * w + i] = complexWeight[(c * h * w + i) * 2]
                    split[(c2 + c) * h * w + i] = complexWeight[(c * h * w + i) * 2 + 1]
                }
            }
            let resized = GridResize.bilinearAlignCorners(split, planes: 2 * c2, inHeight: h, inWidth: w,
                                                          outHeight: height, outWidth: wf)
            return (Self.channelsLast(resized, offset: 0, channels: c2, pixels: height * wf),
                    Self.channelsLast(resized, offset: c2 * height * wf, channels: c2, pixels: height * wf))
        }

        static func channelsLast(_ planes: [Float], offset: Int, channels: Int, pixels: Int) -> [Float] {
            var out = [Float](repeating: 0, count: channels * pixels)
            for c in 0..<channels { for p in 0..<pixels { out[p * channels + c] = planes[offset + c * pixels + p] } }
            return out
        }

        /// `GlobalLocalFilter(channels, h, w)` as `module`, with the gnConv scale folded into post_norm.
        init(_ module: WeightReader, channels: Int, size: HorNetConfiguration.GlobalFilter, scale: Float) {
            let c2 = channels / 2
            h = size.h
            w = size.w
            complexWeight = module("complex_weight", [c2, h, w, 2]).data
            dw = Conv2d(torchWeight: module.scope("dw")("weight", [c2, 1, 3, 3]), bias: nil, padding: .symmetric(1),
                        groups: c2)
            var re = [Float](repeating: 0, count: c2 * h * w), im = re
            for c in 0..<c2 {
                for i in 0..<(h * w) {
                    re[i * c2 + c] = complexWeight[(c * h * w + i) * 2]
                    im[i * c2 + c] = complexWeight[(c * h * w + i) * 2 + 1]
                }
            }
            nativeRe = re
            nativeIm = im
            preNorm = Norm(module.scope("pre_norm"), channels)
            postNorm = Norm(module.scope("post_norm"), channels, scale: scale)
        }
    }

    enum SpatialMixer {
        /// 7x7 depthwise convolution with the gnConv scale folded into weight and bias.
        case dwconv(Conv2d)
        case globalFilter(GlobalLocalFilter)
    }

    struct GnConv {
        let dims: [Int]
        let projIn: Dense
        let dwconv: SpatialMixer
        let pws: [Dense]
        /// proj_out with the block's gamma1 folded in.
        let projOut: Dense
        var sum: Int { dims.reduce(0, +) }
    }

    struct Block {
        let dim: Int
        let norm1: Norm
        let gnconv: GnConv
        let norm2: Norm
        let pwconv1: Dense
        /// pwconv2 with gamma2 folded in.
        let pwconv2: Dense
    }

    public let configuration: HorNetConfiguration
    let stem: Conv2d
    let stemNorm: Norm
    let downsampleNorms: [Norm]
    let downsampleConvs: [Conv2d]
    let stages: [[Block]]
    /// What follows the stages: the classifier's final norm and head, or (as a segmentation backbone,
    /// the official `semantic_segmentation/models/hornet.py`) one channels-first LayerNorm per stage output,
    /// `norm0` … `norm3`.
    enum Top {
        case classifier(norm: LayerNorm, head: Linear)
        case stageNorms([Norm])
    }
    let top: Top

    public var numClasses: Int { configuration.numClasses }

    /// Channels of the four stages' outputs.
    public var stageChannels: [Int] { configuration.dims }

    /// The four stages' outputs [N, ⌊H/4⌋, ⌊W/4⌋, C0] … [N, ⌊H/32⌋, ⌊W/32⌋, C3] (strided convolutions floor):
    /// through `norm0` … `norm3` for a segmentation backbone, as they are for a classifier.
    public func features(_ input: Tensor) -> [Tensor] {
        var outputs: [Tensor] = []
        _ = runStages(input) { outputs.append($0) }
        if case .stageNorms(let norms) = top {
            for (i, norm) in norms.enumerated() {
                let c = norm.bias.count, rows = outputs[i].count / c
                outputs[i].data.withUnsafeMutableBufferPointer { p in
                    RowKernels.layerNorm(rows: rows, channels: c, input: p.baseAddress!, inputStride: c,
                                         output: p.baseAddress!, outputStride: c, weight: norm.weight, bias: norm.bias,
                                         eps: Self.eps)
                }
            }
        }
        return outputs
    }

    /// Official key names from mmpretrain's re-release (`backbone.` prefix, `norm3` for the final norm,
    /// `gnconv.projs` for `gnconv.pws`, `gammaN.weight` (LayerScale modules) for `gammaN`, `head.fc.` for
    /// `head.`). The card strips DataParallel's `module.` before.
    public static func sanitize(_ stateDict: StateDict) throws -> StateDict {
        let mmpretrain = stateDict.keys.contains { $0.hasPrefix("backbone.") || $0.hasPrefix("head.fc.") }
        guard mmpretrain else { return stateDict }
        return try stateDict.renamingKeys { key -> String? in
            if key.hasPrefix("head.fc.") { return "head." + key.dropFirst("head.fc.".count) }
            guard key.hasPrefix("backbone.") else { return key }
            var k = String(key.dropFirst("backbone.".count))
            if k.hasPrefix("norm3.") { k = "norm." + k.dropFirst("norm3.".count) }
            k = k.replacingOccurrences(of: ".gnconv.projs.", with: ".gnconv.pws.")
            for gamma in ["gamma1", "gamma2"] where k.hasSuffix(".\(gamma).weight") {
                k = String(k.dropLast(".weight".count))
            }
            return k
        }
    }

    /// Builds the classifier from official weights, each read where its layer is built, in `state_dict()` order.
    public init(configuration config: HorNetConfiguration, weights: WeightReader) {
        self.init(configuration: config, weights: weights, segmentationBackbone: false)
    }

    /// Builds the segmentation backbone (`norm0` … `norm3`, no final norm or head) from the weights under
    /// an mmseg checkpoint's `backbone.` (pass `weights.scope("backbone")`). `gflayer` sizes are the
    /// checkpoint's (24×13 and 12×7 for the released ADE20K models); every input grid resizes them.
    public init(segmentationBackbone config: HorNetConfiguration, weights: WeightReader) {
        self.init(configuration: config, weights: weights, segmentationBackbone: true)
    }

    init(configuration config: HorNetConfiguration, weights: WeightReader, segmentationBackbone: Bool) {
        configuration = config
        let dims = config.dims
        let scale = Float(config.s)
        let stemLayers = weights.scope("downsample_layers.0")
        let stemConv = stemLayers.scope("0")
        stem = Conv2d(torchWeight: stemConv("weight", [dims[0], config.inChans, 4, 4]), bias: stemConv("bias", [dims[0]]),
                      stride: (4, 4), padding: .zero)
        stemNorm = Norm(stemLayers.scope("1"), dims[0])
        var downsampleNorms: [Norm] = [], downsampleConvs: [Conv2d] = []
        for i in 1..<4 {
            let layers = weights.scope("downsample_layers.\(i)"), conv = layers.scope("1")
            downsampleNorms.append(Norm(layers.scope("0"), dims[i - 1]))
            downsampleConvs.append(Conv2d(torchWeight: conv("weight", [dims[i], dims[i - 1], 2, 2]),
                                          bias: conv("bias", [dims[i]]), stride: (2, 2), padding: .zero))
        }
        self.downsampleNorms = downsampleNorms
        self.downsampleConvs = downsampleConvs
        stages = (0..<4).map { stage in
            let d = dims[stage]
            let gdims = HorNetConfiguration.gnconvDims(d, order: config.orders[stage])
            let sum = gdims.reduce(0, +)
            return (0..<config.depths[stage]).map { j in
                let block = weights.scope("stages.\(stage).\(j)"), gn = block.scope("gnconv")
                let gamma1 = block("gamma1", [d]).data, gamma2 = block("gamma2", [d]).data
                let norm1 = Norm(block.scope("norm1"), d)
                let projIn = Dense(gn.scope("proj_in"), [2 * d, d, 1, 1])
                let mixer: SpatialMixer
                if let size = config.gflayer[stage] {
                    mixer = .globalFilter(GlobalLocalFilter(gn.scope("dwconv"), channels: sum, size: size, scale: scale))
                } else {
                    let dw = gn.scope("dwconv")
                    let w = dw("weight", [sum, 1, 7, 7]), b = dw("bias", [sum])
                    mixer = .dwconv(Conv2d(torchWeight: Tensor(shape: w.shape, data: w.data.map { $0 * scale }),
                                           bias: Tensor(shape: b.shape, data: b.data.map { $0 * scale }),
                                           padding: .symmetric(3), groups: sum))
                }
                let projOut = Dense(gn.scope("proj_out"), [d, d, 1, 1], scale: gamma1)
                let pws = (0..<(gdims.count - 1)).map { k in
                    Dense(gn.scope("pws.\(k)"), [gdims[k + 1], gdims[k], 1, 1])
                }
                return Block(dim: d, norm1: norm1,
                             gnconv: GnConv(dims: gdims, projIn: projIn, dwconv: mixer, pws: pws, projOut: projOut),
                             norm2: Norm(block.scope("norm2"), d),
                             pwconv1: Dense(block.scope("pwconv1"), [4 * d, d]),
                             pwconv2: Dense(block.scope("pwconv2"), [d, 4 * d], scale: gamma2))
            }
        }
        if segmentationBackbone {
            top = .stageNorms((0..<4).map { Norm(weights.scope("norm\($0)"), dims[$0]) })
        } else {
            top = .classifier(
                norm: LayerNorm(weight: weights("norm.weight", [dims[3]]), bias: weights("norm.bias", [dims[3]]), eps: Self.eps),
                head: Linear(weight: weights("head.weight", [config.numClasses, dims[3]]),
                             bias: weights("head.bias", [config.numClasses])))
        }
    }

    /// Pixels per chunk of images that a stage processes together: big enough for efficient GEMMs on
    /// the small late-stage grids, small enough that a chunk's workspace stays in cache.
    static let chunkPixels = 3136

    /// Logits [N, classes] for NHWC input already normalised as the model expects (sides divisible by 32).
    public func callAsFunction(_ input: Tensor) -> Tensor {
        guard case .classifier(let norm, let head) = top else {
            preconditionFailure("a HorNet segmentation backbone has no classifier head")
        }
        return head(norm(Pooling.globalAverage(runStages(input, keep: nil))))
    }

    /// Runs the stem and the four stages, handing each stage's output to `keep`; the last stage's output.
    func runStages(_ input: Tensor, keep: ((Tensor) -> Void)?) -> Tensor {
        precondition(input.rank == 4 && input.shape[3] == configuration.inChans,
                     "HorNet expects NHWC with \(configuration.inChans) channels, got \(input.shape)")
        var x = stem(input)
        let stemRows = x.count / stemNorm.bias.count
        x.data.withUnsafeMutableBufferPointer { p in
            RowKernels.layerNorm(rows: stemRows, channels: stemNorm.bias.count,
                                 input: p.baseAddress!, inputStride: stemNorm.bias.count,
                                 output: p.baseAddress!, outputStride: stemNorm.bias.count,
                                 weight: stemNorm.weight, bias: stemNorm.bias, eps: Self.eps)
        }
        for stage in 0..<4 {
            if stage > 0 {
                let n = downsampleNorms[stage - 1], c = n.bias.count, rows = x.count / c
                x.data.withUnsafeMutableBufferPointer { p in
                    RowKernels.layerNorm(rows: rows, channels: c, input: p.baseAddress!, inputStride: c,
                                         output: p.baseAddress!, outputStride: c, weight: n.weight, bias: n.bias,
                                         eps: Self.eps)
                }
                x = downsampleConvs[stage - 1](x)
            }
            runStage(stage, &x)
            keep?(x)
        }
        return x
    }

    /// The blocks of one stage on x [N, H, W, C], in chunks of whole images.
    func runStage(_ stage: Int, _ x: inout Tensor) {
        let blocks = stages[stage]
        guard let first = blocks.first else { return }
        let (n, h, w, c) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let perChunk = max(1, min(n, Self.chunkPixels / (h * w)))
        let workspace = Workspace(pixels: perChunk * h * w, dim: c, gnconvSum: first.gnconv.sum, halfDim: first.gnconv.dims[0])
        defer { workspace.deallocate() }
        // Resized global-filter weights depend only on the grid: computed once per forward.
        let filterPlanes: [([Float], [Float])?] = blocks.map { block in
            if case .globalFilter(let gf) = block.gnconv.dwconv { return gf.planes(height: h, frequencyWidth: w / 2 + 1) }
            return nil
        }
        let spectral: SpectralFilter2D? = filterPlanes.contains { $0 != nil } ? SpectralFilter2D(height: h, width: w) : nil
        x.data.withUnsafeMutableBufferPointer { xp in
            var start = 0
            while start < n {
                let images = min(perChunk, n - start)
                let chunk = xp.baseAddress! + start * h * w * c
                var pending: [Float]? = nil
                for (index, block) in blocks.enumerated() {
                    pending = runBlock(block, x: chunk, images: images, height: h, width: w, pendingBias: pending,
                                       workspace: workspace, filterPlanes: filterPlanes[index], spectral: spectral)
                }
                if let pending { RowKernels.addBias(rows: images * h * w, channels: c, data: chunk, stride: c, bias: pending) }
                start += images
            }
        }
    }

    /// Scratch buffers of one chunk, allocated once per stage and reused by every block.
    final class Workspace {
        let normed: UnsafeMutablePointer<Float>, pong: UnsafeMutablePointer<Float>, pwa: UnsafeMutablePointer<Float>
        let abc: UnsafeMutablePointer<Float>, dwout: UnsafeMutablePointer<Float>, hidden: UnsafeMutablePointer<Float>
        init(pixels: Int, dim: Int, gnconvSum: Int, halfDim: Int) {
            normed = .allocate(capacity: pixels * dim)
            pong = .allocate(capacity: pixels * dim)
            pwa = .allocate(capacity: pixels * halfDim)
            abc = .allocate(capacity: pixels * gnconvSum)
            dwout = .allocate(capacity: pixels * gnconvSum)
            hidden = .allocate(capacity: pixels * 4 * dim)
        }
        func deallocate() {
            for p in [normed, pong, pwa, abc, dwout, hidden] { p.deallocate() }
        }
    }

    /// One block on `images` images at x (NHWC, contiguous). `pendingBias` is the bias the previous
    /// block's pwconv2 still owes x; the returned bias is the one this block's pwconv2 owes.
    func runBlock(_ block: Block, x: UnsafeMutablePointer<Float>, images: Int, height: Int, width: Int,
                  pendingBias: [Float]?, workspace ws: Workspace, filterPlanes: ([Float], [Float])?,
                  spectral: SpectralFilter2D?) -> [Float] {
        let c = block.dim, rows = images * height * width
        let g = block.gnconv, dims = g.dims, sum = g.sum
        // x (+ pending bias) -> norm1 -> normed
        block.norm1.weight.withUnsafeBufferPointer { nw in
            block.norm1.bias.withUnsafeBufferPointer { nb in
                if let pendingBias {
                    pendingBias.withUnsafeBufferPointer { pb in
                        RowKernels.layerNorm(rows: rows, channels: c, input: x, inputStride: c, output: ws.normed,
                                             outputStride: c, weight: nw.baseAddress!, bias: nb.baseAddress!,
                                             eps: Self.eps, addBias: pb.baseAddress!)
                    }
                } else {
                    RowKernels.layerNorm(rows: rows, channels: c, input: x, inputStride: c, output: ws.normed,
                                         outputStride: c, weight: nw.baseAddress!, bias: nb.baseAddress!, eps: Self.eps)
                }
            }
        }
        // proj_in: the last `sum` outputs (abc) first, then the first dims[0] (pwa) once the spatial
        // mixing of abc is done, so that pwa's GEMM can finish each tile with the first gating product.
        g.projIn.weight.withUnsafeBufferPointer { wp in
            g.projIn.bias.withUnsafeBufferPointer { bias in
                let abcBias = bias.baseAddress! + dims[0]
                switch g.dwconv {
                case .dwconv(let conv):
                    BLAS.gemm(m: rows, n: sum, k: c, a: ws.normed, lda: c, b: wp.baseAddress! + dims[0] * c,
                                    ldb: c, c: ws.abc, ldc: sum, epilogue: .bias(abcBias))
                    conv.depthwise(input: ws.abc, output: ws.dwout, batch: images, height: height, width: width)
                case .globalFilter(let gf):
                    BLAS.gemm(m: rows, n: sum, k: c, a: ws.normed, lda: c, b: wp.baseAddress! + dims[0] * c,
                                    ldb: c, c: ws.abc, ldc: sum)
                    globalFilter(gf, abc: ws.abc, abcBias: abcBias, output: ws.dwout, images: images, height: height,
                                 width: width, channels: sum, scratch: ws.hidden, planes: filterPlanes!, spectral: spectral!)
                }
                // p = (pwa + b) * dw_0
                BLAS.gemm(m: rows, n: dims[0], k: c, a: ws.normed, lda: c, b: wp.baseAddress!, ldb: c,
                                c: ws.pwa, ldc: dims[0],
                                epilogue: .biasGate(bias: bias.baseAddress!, gate: ws.dwout, gateStride: sum))
            }
        }
        // p = (pws[k](p) + b) * dw_{k+1}
        var current = ws.pwa, spare = ws.pong, offset = dims[0]
        for (k, pw) in g.pws.enumerated() {
            let (inDim, outDim) = (dims[k], dims[k + 1])
            pw.weight.withUnsafeBufferPointer { wp in
                pw.bias.withUnsafeBufferPointer { bp in
                    BLAS.gemm(m: rows, n: outDim, k: inDim, a: current, lda: inDim, b: wp.baseAddress!, ldb: inDim,
                                    c: spare, ldc: outDim,
                                    epilogue: .biasGate(bias: bp.baseAddress!, gate: ws.dwout + offset, gateStride: sum))
                }
            }
            offset += outDim
            let used = current
            current = spare
            spare = used == ws.pwa ? ws.normed : used
        }
        // x += gamma1 * proj_out(p): the GEMM accumulates into x, its bias is added by norm2's pass.
        g.projOut.weight.withUnsafeBufferPointer { wp in
            BLAS.gemm(m: rows, n: c, k: c, a: current, lda: c, b: wp.baseAddress!, ldb: c, c: x, ldc: c,
                            accumulate: true)
        }
        block.norm2.weight.withUnsafeBufferPointer { nw in
            block.norm2.bias.withUnsafeBufferPointer { nb in
                g.projOut.bias.withUnsafeBufferPointer { pb in
                    RowKernels.layerNorm(rows: rows, channels: c, input: x, inputStride: c, output: ws.normed,
                                         outputStride: c, weight: nw.baseAddress!, bias: nb.baseAddress!,
                                         eps: Self.eps, addBias: pb.baseAddress!)
                }
            }
        }
        // MLP: x += gamma2 * pwconv2(GELU(pwconv1(norm2(x)))).
        block.pwconv1.weight.withUnsafeBufferPointer { wp in
            block.pwconv1.bias.withUnsafeBufferPointer { bp in
                BLAS.gemm(m: rows, n: 4 * c, k: c, a: ws.normed, lda: c, b: wp.baseAddress!, ldb: c,
                                c: ws.hidden, ldc: 4 * c, epilogue: .bias(bp.baseAddress!, activation: .gelu))
            }
        }
        block.pwconv2.weight.withUnsafeBufferPointer { wp in
            BLAS.gemm(m: rows, n: c, k: 4 * c, a: ws.hidden, lda: 4 * c, b: wp.baseAddress!, ldb: 4 * c,
                            c: x, ldc: c, accumulate: true)
        }
        return block.pwconv2.bias
    }

    /// GlobalLocalFilter on abc (+ proj_in's bias): pre_norm, 3x3 depthwise on the first half and the
    /// Fourier filter on the second, interleaved channel by channel, post_norm (with the gnConv scale).
    func globalFilter(_ gf: GlobalLocalFilter, abc: UnsafeMutablePointer<Float>, abcBias: UnsafePointer<Float>,
                      output: UnsafeMutablePointer<Float>, images: Int, height: Int, width: Int, channels: Int,
                      scratch: UnsafeMutablePointer<Float>, planes: ([Float], [Float]), spectral: SpectralFilter2D) {
        let rows = images * height * width, half = channels / 2
        let x1 = scratch, x2 = scratch + rows * half, y1 = scratch + 2 * rows * half, y2 = abc
        gf.preNorm.weight.withUnsafeBufferPointer { w in
            gf.preNorm.bias.withUnsafeBufferPointer { b in
                RowKernels.layerNormSplit(rows: rows, channels: channels, input: abc, inputStride: channels,
                                          first: x1, second: x2, weight: w.baseAddress!, bias: b.baseAddress!,
                                          eps: Self.eps, addBias: abcBias)
            }
        }
        gf.dw.depthwise(input: x1, output: y1, batch: images, height: height, width: width)
        let block = 16
        let blocks = (half + block - 1) / block
        let pixels = height * width
        let scale = 1 / Float(pixels)
        planes.0.withUnsafeBufferPointer { re in
            planes.1.withUnsafeBufferPointer { im in
                let box = UnsafeSendable((x2, y2, re.baseAddress!, im.baseAddress!))
                Parallel.forEachChunk(images * blocks) { tasks in
                    let (x2, y2, re, im) = box.value
                    let work = UnsafeMutablePointer<Float>.allocate(capacity: spectral.scratchCount(channels: block))
                    defer { work.deallocate() }
                    for task in tasks {
                        let image = task / blocks, c0 = (task % blocks) * block
                        let nb = min(block, half - c0)
                        spectral.apply(input: x2 + image * pixels * half + c0, inputStride: half,
                                       output: y2 + image * pixels * half + c0, outputStride: half, channels: nb,
                                       weightRe: re + c0, weightIm: im + c0, weightStride: half, scale: scale,
                                       scratch: work)
                    }
                }
            }
        }
        gf.postNorm.weight.withUnsafeBufferPointer { w in
            gf.postNorm.bias.withUnsafeBufferPointer { b in
                RowKernels.interleaveLayerNorm(rows: rows, channels: channels, first: y1, second: y2, output: output,
                                               outputStride: channels, weight: w.baseAddress!, bias: b.baseAddress!,
                                               eps: Self.eps)
            }
        }
    }
}
