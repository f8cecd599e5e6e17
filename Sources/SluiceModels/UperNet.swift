// UperNet semantic segmentation as mmsegmentation 0.x runs it (`EncoderDecoder` with `UPerHead` and the
// training-only `FCNHead`), over any image backbone with four stage outputs. Module and key names follow
// mmseg's state dict: `decode_head.{psp_modules.S.1, bottleneck, lateral_convs.I, fpn_convs.I,
// fpn_bottleneck}.{conv,bn}` (mmcv ConvModule: conv without bias, BatchNorm eps 1e-5, ReLU),
// `decode_head.conv_seg`, `auxiliary_head.{convs.0, conv_seg}`. BatchNorm is folded into each conv at
// load. Every resize is bilinear with align_corners=False (`Interpolate`).

import SluiceMedia
import SluiceTensor

public struct UperNetConfiguration: Sendable, Equatable {
    /// Channels inside the head (512 in every official config).
    public var channels: Int
    public var poolScales: [Int]
    public var numClasses: Int
    /// FCNHead channels (256); the auxiliary head is read when a checkpoint has it and never run.
    public var auxiliaryChannels: Int
    /// Which stage the auxiliary head reads (2).
    public var auxiliaryIndex: Int

    public init(channels: Int = 512, poolScales: [Int] = [1, 2, 3, 6], numClasses: Int = 150,
                auxiliaryChannels: Int = 256, auxiliaryIndex: Int = 2) {
        self.channels = channels; self.poolScales = poolScales; self.numClasses = numClasses
        self.auxiliaryChannels = auxiliaryChannels; self.auxiliaryIndex = auxiliaryIndex
    }
}

/// How a segmenter covers an image (mmseg `test_cfg`).
public enum SegmentationMode: Sendable, Equatable {
    /// The whole image in one pass.
    case whole
    /// Windows of `crop` (height, width) every `stride`, the last one shifted back to touch the border;
    /// overlapping logits are averaged.
    case slide(cropHeight: Int, cropWidth: Int, strideHeight: Int, strideWidth: Int)

    /// The official ADE20K setting of the 512-crop models.
    public static let slide512 = SegmentationMode.slide(cropHeight: 512, cropWidth: 512, strideHeight: 341, strideWidth: 341)
    /// The official ADE20K setting of the 640-crop (large) models.
    public static let slide640 = SegmentationMode.slide(cropHeight: 640, cropWidth: 640, strideHeight: 426, strideWidth: 426)
}

/// mmcv `ConvModule(norm_cfg=BN, act_cfg=ReLU)`: conv (no bias) → BatchNorm (eps 1e-5) → ReLU, with the
/// norm folded into the conv.
struct ConvModule: Sendable {
    let conv: Conv2d

    /// Reads the module's weights without building it (a head that is checked but never run).
    static func check(_ module: WeightReader, in inChannels: Int, out outChannels: Int, kernel: Int) {
        _ = module.scope("conv")("weight", [outChannels, inChannels, kernel, kernel])
        let bn = module.scope("bn")
        for key in ["weight", "bias", "running_mean", "running_var"] { _ = bn(key, [outChannels]) }
    }

    init(_ module: WeightReader, in inChannels: Int, out outChannels: Int, kernel: Int) {
        let raw = Conv2d(torchWeight: module.scope("conv")("weight", [outChannels, inChannels, kernel, kernel]), bias: nil,
                         padding: .symmetric(kernel / 2))
        let bn = module.scope("bn")
        // 3x3 layers (the FPN and bottleneck convs, most of the head's work) run as Winograd F(2x2, 3x3).
        conv = raw.folding(BatchNorm(weight: bn("weight", [outChannels]), bias: bn("bias", [outChannels]),
                                     runningMean: bn("running_mean", [outChannels]),
                                     runningVar: bn("running_var", [outChannels]), eps: 1e-5)).usingWinograd()
    }

    func callAsFunction(_ x: Tensor) -> Tensor { conv(x, activation: .relu) }
}

/// mmseg `UPerHead`: a pyramid pooling module on the deepest stage, lateral 1x1 convs, a cumulative
/// top-down path, 3x3 FPN convs, fusion of all levels at the finest one, then the classifier.
public struct UPerHead: Sendable {
    let poolScales: [Int]
    let pspModules: [ConvModule]
    let bottleneck: ConvModule
    let lateralConvs: [ConvModule]
    let fpnConvs: [ConvModule]
    let fpnBottleneck: ConvModule
    let convSeg: Conv2d
    let channels: Int

    init(_ head: WeightReader, inChannels: [Int], configuration config: UperNetConfiguration) {
        precondition(inChannels.count == 4, "UPerHead fuses four stages, got \(inChannels.count)")
        let ch = config.channels
        poolScales = config.poolScales
        channels = ch
        pspModules = config.poolScales.indices.map { ConvModule(head.scope("psp_modules.\($0).1"), in: inChannels[3], out: ch, kernel: 1) }
        bottleneck = ConvModule(head.scope("bottleneck"), in: inChannels[3] + config.poolScales.count * ch, out: ch, kernel: 3)
        lateralConvs = (0..<3).map { ConvModule(head.scope("lateral_convs.\($0)"), in: inChannels[$0], out: ch, kernel: 1) }
        fpnConvs = (0..<3).map { ConvModule(head.scope("fpn_convs.\($0)"), in: ch, out: ch, kernel: 3) }
        fpnBottleneck = ConvModule(head.scope("fpn_bottleneck"), in: 4 * ch, out: ch, kernel: 3)
        let seg = head.scope("conv_seg")
        convSeg = Conv2d(torchWeight: seg("weight", [config.numClasses, ch, 1, 1]), bias: seg("bias", [config.numClasses]))
    }

    /// Logits [N, h0, w0, classes] at the resolution of the first (stride-4) stage.
    func callAsFunction(_ inputs: [Tensor]) -> Tensor {
        var laterals = (0..<3).map { lateralConvs[$0](inputs[$0]) }
        laterals.append(pyramidPooling(inputs[3]))
        for i in stride(from: 3, to: 0, by: -1) {
            Interpolate.bilinear(laterals[i], into: &laterals[i - 1], accumulate: true)
        }
        let finest = laterals[0]
        var fused = Tensor(uninitialized: [finest.shape[0], finest.shape[1], finest.shape[2], 4 * channels]) { _ in }
        for i in 0..<4 {
            let level = i < 3 ? fpnConvs[i](laterals[i]) : laterals[3]
            Interpolate.bilinear(level, into: &fused, channelOffset: i * channels)
        }
        return convSeg(fpnBottleneck(fused))
    }

    /// `psp_forward`: [x, ppm(1), ppm(2), …] concatenated on channels, x first, then the bottleneck.
    func pyramidPooling(_ x: Tensor) -> Tensor {
        let (n, h, w, c) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        var stacked = Tensor(uninitialized: [n, h, w, c + poolScales.count * channels]) { _ in }
        Interpolate.bilinear(x, into: &stacked)
        for (k, scale) in poolScales.enumerated() {
            let pooled = pspModules[k](Pooling.adaptiveAverage(x, height: scale, width: scale))
            Interpolate.bilinear(pooled, into: &stacked, channelOffset: c + k * channels)
        }
        return bottleneck(stacked)
    }
}

/// mmseg `EncoderDecoder` for inference: backbone → UPerHead → logits resized to the input, whole or by
/// sliding windows.
public struct UperNet: ImageSegmenter {
    public let backbone: any ImageBackbone
    public let configuration: UperNetConfiguration
    let decodeHead: UPerHead
    public var mode: SegmentationMode
    /// The smallest input side: the backbone's deepest stage has stride 32.
    public static let minimumSide = 32

    public var numClasses: Int { configuration.numClasses }

    /// Builds the heads from `weights` (mmseg keys: `decode_head.*`, and `auxiliary_head.*` when present,
    /// which is checked and then dropped) over `backbone`, whose own weights the caller has read.
    public init(backbone: any ImageBackbone, configuration config: UperNetConfiguration, weights: WeightReader,
                mode: SegmentationMode = .whole) {
        self.backbone = backbone
        configuration = config
        self.mode = mode
        decodeHead = UPerHead(weights.scope("decode_head"), inChannels: backbone.stageChannels, configuration: config)
        if weights.contains(module: "auxiliary_head") {
            let aux = weights.scope("auxiliary_head")
            ConvModule.check(aux.scope("convs.0"), in: backbone.stageChannels[config.auxiliaryIndex],
                             out: config.auxiliaryChannels, kernel: 3)
            _ = aux.scope("conv_seg")("weight", [config.numClasses, config.auxiliaryChannels, 1, 1])
            _ = aux.scope("conv_seg")("bias", [config.numClasses])
        }
    }

    /// `encode_decode`: logits [N, H, W, classes] for input [N, H, W, 3], resized from the head's stride-4
    /// output to the input's size.
    public func encodeDecode(_ input: Tensor) -> Tensor {
        precondition(input.shape[1] >= Self.minimumSide && input.shape[2] >= Self.minimumSide,
                     "UperNet needs sides of at least \(Self.minimumSide) pixels, got \(input.shape[1])x\(input.shape[2])")
        let logits = decodeHead(backbone.features(input))
        return Interpolate.bilinear(logits, height: input.shape[1], width: input.shape[2])
    }

    /// Logits [N, H, W, classes] at the input's size, as `mode` covers it. A side shorter than
    /// `minimumSide` (a thin panorama after rescaling) is padded with zeros (the mean colour, after
    /// normalisation) for the pass and cropped back.
    public func segment(_ input: Tensor) -> Tensor {
        let (h, w) = (input.shape[1], input.shape[2])
        if h < Self.minimumSide || w < Self.minimumSide {
            let padded = input.padded(height: max(h, Self.minimumSide), width: max(w, Self.minimumSide))
            return segment(padded).window(y: 0, x: 0, height: h, width: w)
        }
        switch mode {
        case .whole: return encodeDecode(input)
        case .slide(let ch, let cw, let sh, let sw): return slide(input, crop: (ch, cw), stride: (sh, sw))
        }
    }

    /// The windows mmseg's `slide_inference` visits for an image of `height` x `width`: (y, x, h, w).
    public static func windows(height: Int, width: Int, crop: (Int, Int), stride: (Int, Int)) -> [(y: Int, x: Int, h: Int, w: Int)] {
        func starts(_ size: Int, _ c: Int, _ s: Int) -> [(Int, Int)] {
            let grids = max(size - c + s - 1, 0) / s + 1
            return (0..<grids).map { i in
                let end = min(i * s + c, size)
                let start = max(end - c, 0)
                return (start, end - start)
            }
        }
        let ys = starts(height, crop.0, stride.0), xs = starts(width, crop.1, stride.1)
        return ys.flatMap { y in xs.map { x in (y: y.0, x: x.0, h: y.1, w: x.1) } }
    }

    /// `slide_inference`: each window through `encodeDecode`, one at a time (memory follows the window,
    /// not the image), logits summed and divided by how many windows cover each pixel.
    func slide(_ input: Tensor, crop: (Int, Int), stride: (Int, Int)) -> Tensor {
        let (n, h, w) = (input.shape[0], input.shape[1], input.shape[2])
        let k = numClasses
        var sum = Tensor(zeros: [n, h, w, k])
        var coverage = [Float](repeating: 0, count: h * w)
        for window in Self.windows(height: h, width: w, crop: crop, stride: stride) {
            let logits = encodeDecode(input.window(y: window.y, x: window.x, height: window.h, width: window.w))
            sum.data.withUnsafeMutableBufferPointer { s in
                logits.data.withUnsafeBufferPointer { l in
                    for image in 0..<n {
                        for row in 0..<window.h {
                            let dst = s.baseAddress! + ((image * h + window.y + row) * w + window.x) * k
                            let src = l.baseAddress! + (image * window.h + row) * window.w * k
                            for i in 0..<(window.w * k) { dst[i] += src[i] }
                        }
                    }
                }
            }
            for row in 0..<window.h {
                for column in 0..<window.w { coverage[(window.y + row) * w + window.x + column] += 1 }
            }
        }
        sum.data.withUnsafeMutableBufferPointer { s in
            for image in 0..<n {
                for pixel in 0..<(h * w) {
                    let base = s.baseAddress! + (image * h * w + pixel) * k
                    let count = coverage[pixel]
                    for c in 0..<k { base[c] /= count }
                }
            }
        }
        return sum
    }
}

extension Tensor {
    /// NHWC `self` in the top-left corner of zeros of `height` x `width`.
    func padded(height: Int, width: Int) -> Tensor {
        let (n, h, w, c) = (shape[0], shape[1], shape[2], shape[3])
        var out = Tensor(zeros: [n, height, width, c])
        out.data.withUnsafeMutableBufferPointer { dst in
            data.withUnsafeBufferPointer { src in
                for image in 0..<n {
                    for row in 0..<h {
                        (dst.baseAddress! + (image * height + row) * width * c)
                            .update(from: src.baseAddress! + (image * h + row) * w * c, count: w * c)
                    }
                }
            }
        }
        return out
    }

    /// The rows y ..< y+height and columns x ..< x+width of every image of NHWC `self`.
    func window(y: Int, x: Int, height: Int, width: Int) -> Tensor {
        let (n, h, w, c) = (shape[0], shape[1], shape[2], shape[3])
        precondition(y >= 0 && x >= 0 && y + height <= h && x + width <= w, "window outside \(h)x\(w)")
        if y == 0 && x == 0 && height == h && width == w { return self }
        return Tensor(uninitialized: [n, height, width, c]) { out in
            data.withUnsafeBufferPointer { src in
                for image in 0..<n {
                    for row in 0..<height {
                        (out.baseAddress! + (image * height + row) * width * c)
                            .update(from: src.baseAddress! + ((image * h + y + row) * w + x) * c, count: width * c)
                    }
                }
            }
        }
    }
}

extension ModelRegistry {
    /// The registered names of HorNet's official ADE20K segmentation models.
    public static let upernetHorNetNames = ["tiny", "small", "base", "large"].flatMap { size in
        ["7x7", "gf"].map { "upernet_hornet_\(size)_\($0)" }
    }

    /// `upernet_hornet_{tiny,small,base,large}_{7x7,gf}`: the official configs (HorNet
    /// `semantic_segmentation/configs/hornet/`): ADE20K's 150 classes, UPerHead with 512 channels over the
    /// backbone's four stages, slide inference with 512 crops and stride 341 (640 and 426 for large) on
    /// pictures rescaled to fit 2048x512 (2560x640). The GF stages' filter sizes are read from the
    /// checkpoint (24x13 and 12x7 in the released ones).
    static func upernetHorNet(name: String) -> ModelCard? {
        let parts = name.split(separator: "_")
        guard parts.count == 4, parts[0] == "upernet", parts[1] == "hornet",
              var backbone = HorNetConfiguration.named("hornet_\(parts[2])_\(parts[3])") else { return nil }
        if parts[3] == "gf" { backbone.gflayer = [nil, nil, .init(h: 24, w: 13), .init(h: 12, w: 7)] }
        let large = parts[2] == "large"
        return upernetCard(name: name, backbone: backbone, head: UperNetConfiguration(),
                           mode: large ? .slide640 : .slide512,
                           input: .rescaled(longSide: large ? 2560 : 2048, shortSide: large ? 640 : 512,
                                            interpolation: .bilinear, mean: [123.675, 116.28, 103.53],
                                            std: [58.395, 57.12, 57.375]),
                           labels: LabelSet(name: "ade20k", labels: LabelSet.ade20k.labels, palette: Palette.ade20k))
    }

    /// A UperNet-on-HorNet card for any configuration (reduced ones in tests).
    public static func upernetCard(name: String, backbone config: HorNetConfiguration, head: UperNetConfiguration,
                                   mode: SegmentationMode, input: ImageInput, labels: LabelSet) -> ModelCard {
        ModelCard(name: name, family: "upernet_hornet",
                  reference: "mmseg 0.x EncoderDecoder/UPerHead + HorNet semantic_segmentation/models/hornet.py",
                  task: .semanticSegmentation, input: InputSpec(image: input), labels: labels,
                  ignoredKeySuffixes: ["num_batches_tracked"],
                  construct: { weights in
                      var backbone = config
                      for (stage, filter) in config.gflayer.enumerated() where filter != nil {
                          let key = "backbone.stages.\(stage).0.gnconv.dwconv.complex_weight"
                          if let shape = weights.shape(of: key), shape.count == 4, shape[1] > 0, shape[2] > 0 {
                              backbone.gflayer[stage] = .init(h: shape[1], w: shape[2])
                          }
                      }
                      let encoder = HorNet(segmentationBackbone: backbone, weights: weights.scope("backbone"))
                      return .segmenter(UperNet(backbone: encoder, configuration: head, weights: weights, mode: mode))
                  })
    }
}

extension LoadedModel {
    /// The model with its segmentation mode replaced (nil, or a model that is no UperNet: unchanged).
    public func settingSegmentationMode(_ mode: SegmentationMode?) -> LoadedModel {
        guard let mode, case .segmenter(let segmenter) = self, var upernet = segmenter as? UperNet else { return self }
        upernet.mode = mode
        return .segmenter(upernet)
    }
}
