/// Padding on each side, as (top, left, bottom, right). TensorFlow's "SAME" padding is asymmetric,
/// so a single symmetric number does not cover the models Sluice runs.
public struct Padding2D: Sendable, Equatable {
    public var top: Int, left: Int, bottom: Int, right: Int
    public init(top: Int, left: Int, bottom: Int, right: Int) {
        self.top = top; self.left = left; self.bottom = bottom; self.right = right
    }
    /// The same padding on all four sides (PyTorch's `padding=p`).
    public static func symmetric(_ p: Int) -> Padding2D { .init(top: p, left: p, bottom: p, right: p) }
    public static func symmetric(_ ph: Int, _ pw: Int) -> Padding2D { .init(top: ph, left: pw, bottom: ph, right: pw) }
    public static let zero = Padding2D.symmetric(0)

    /// TensorFlow "SAME": output = ceil(input / stride), the extra pixel of padding goes bottom/right.
    public static func same(inputHeight ih: Int, inputWidth iw: Int, kernel: (Int, Int),
                            stride: (Int, Int), dilation: (Int, Int) = (1, 1)) -> Padding2D {
        func pad(_ i: Int, _ k: Int, _ s: Int, _ d: Int) -> (Int, Int) {
            let o = (i + s - 1) / s
            let total = max((o - 1) * s + (k - 1) * d + 1 - i, 0)
            return (total / 2, total - total / 2)
        }
        let (t, b) = pad(ih, kernel.0, stride.0, dilation.0)
        let (l, r) = pad(iw, kernel.1, stride.1, dilation.1)
        return .init(top: t, left: l, bottom: b, right: r)
    }
}

/// Inference-time BatchNorm parameters; folded into the preceding convolution at load time.
public struct BatchNorm: Sendable {
    public var weight: Tensor, bias: Tensor, runningMean: Tensor, runningVar: Tensor
    public var eps: Float
    public init(weight: Tensor, bias: Tensor, runningMean: Tensor, runningVar: Tensor, eps: Float) {
        self.weight = weight; self.bias = bias; self.runningMean = runningMean; self.runningVar = runningVar
        self.eps = eps
    }
    /// y = x * scale + shift per channel.
    public var scaleAndShift: (scale: [Float], shift: [Float]) {
        var scale = [Float](repeating: 0, count: weight.count), shift = scale
        for c in 0..<weight.count {
            scale[c] = weight.data[c] / (runningVar.data[c] + eps).squareRoot()
            shift[c] = bias.data[c] - runningMean.data[c] * scale[c]
        }
        return (scale, shift)
    }

    /// Applies the normalisation to a channels-last tensor (when there is no conv to fold into).
    public func callAsFunction(_ x: Tensor) -> Tensor {
        let (scale, shift) = scaleAndShift
        let channels = scale.count
        precondition(x.shape.last == channels, "batch norm over \(channels) channels got \(x.shape)")
        var y = x
        y.data.withUnsafeMutableBufferPointer { p in
            for i in stride(from: 0, to: p.count, by: channels) {
                for c in 0..<channels { p[i + c] = p[i + c] * scale[c] + shift[c] }
            }
        }
        return y
    }
}

/// 2-D convolution over NHWC input, holding its weight in the layout its kernel wants:
/// depthwise [kh, kw, C]; otherwise OHWI [out, kh, kw, in/groups] multiplied as B^T in a GEMM.
public struct Conv2d: Sendable {
    public let inChannels: Int, outChannels: Int
    public let kernel: (h: Int, w: Int)
    public let stride: (h: Int, w: Int)
    public let dilation: (h: Int, w: Int)
    public let groups: Int
    /// Fixed padding; nil means TensorFlow "SAME" padding computed from each input's size.
    public let padding: Padding2D?
    public private(set) var weight: Tensor
    public private(set) var bias: Tensor?

    public var isDepthwise: Bool { groups == inChannels && groups == outChannels && groups > 1 }

    /// Builds the layer from a PyTorch weight in OIHW layout, converting it once.
    public init(torchWeight: Tensor, bias: Tensor?, stride: (Int, Int) = (1, 1), padding: Padding2D? = .zero,
                dilation: (Int, Int) = (1, 1), groups: Int = 1) {
        precondition(torchWeight.rank == 4, "conv weight must be OIHW, got \(torchWeight.shape)")
        let (o, ig, kh, kw) = (torchWeight.shape[0], torchWeight.shape[1], torchWeight.shape[2], torchWeight.shape[3])
        precondition(o % groups == 0, "out channels \(o) not divisible by groups \(groups)")
        if let bias { precondition(bias.shape == [o], "conv bias \(bias.shape) does not fit \(o) outputs") }
        inChannels = ig * groups
        outChannels = o
        kernel = (kh, kw)
        self.stride = stride
        self.dilation = dilation
        self.groups = groups
        self.padding = padding
        self.bias = bias
        if groups == inChannels && groups == o && groups > 1 {
            weight = torchWeight.reshaped([o, kh, kw]).permuted([1, 2, 0])   // [kh, kw, C]
        } else {
            weight = torchWeight.permuted([0, 2, 3, 1])                       // [O, kh, kw, I/g]
        }
    }

    /// Folds an inference BatchNorm that follows this convolution into its weight and bias.
    public func folding(_ norm: BatchNorm) -> Conv2d {
        precondition(norm.weight.count == outChannels, "batch norm has \(norm.weight.count) channels, conv \(outChannels)")
        let (scale, shift) = norm.scaleAndShift
        var folded = self
        if isDepthwise {
            folded.weight.data.withUnsafeMutableBufferPointer { w in
                for i in 0..<w.count { w[i] *= scale[i % outChannels] }
            }
        } else {
            let perOutput = weight.count / outChannels
            folded.weight.data.withUnsafeMutableBufferPointer { w in
                for i in 0..<w.count { w[i] *= scale[i / perOutput] }
            }
        }
        var newBias = [Float](repeating: 0, count: outChannels)
        for c in 0..<outChannels { newBias[c] = (bias?.data[c] ?? 0) * scale[c] + shift[c] }
        folded.bias = Tensor(shape: [outChannels], data: newBias)
        return folded
    }

    public func padding(forHeight h: Int, width w: Int) -> Padding2D {
        padding ?? .same(inputHeight: h, inputWidth: w, kernel: kernel, stride: stride, dilation: dilation)
    }

    public func outputSize(height h: Int, width w: Int) -> (Int, Int) {
        let p = padding(forHeight: h, width: w)
        let oh = (h + p.top + p.bottom - dilation.h * (kernel.h - 1) - 1) / stride.h + 1
        let ow = (w + p.left + p.right - dilation.w * (kernel.w - 1) - 1) / stride.w + 1
        return (oh, ow)
    }

    /// Runs the convolution on NHWC `x`, then adds the bias and applies `activation`.
    public func callAsFunction(_ x: Tensor, activation: Activation = .identity) -> Tensor {
        precondition(x.rank == 4 && x.shape[3] == inChannels, "conv expects NHWC with \(inChannels) channels, got \(x.shape)")
        let (n, h, w) = (x.shape[0], x.shape[1], x.shape[2])
        let (oh, ow) = outputSize(height: h, width: w)
        let pad = padding(forHeight: h, width: w)
        let geometry = ConvGeometry(batch: n, inHeight: h, inWidth: w, inChannels: inChannels,
                                    outHeight: oh, outWidth: ow, outChannels: outChannels,
                                    kernelH: kernel.h, kernelW: kernel.w, strideH: stride.h, strideW: stride.w,
                                    dilationH: dilation.h, dilationW: dilation.w, padTop: pad.top, padLeft: pad.left)
        return Tensor(uninitialized: [n, oh, ow, outChannels]) { out in
            x.data.withUnsafeBufferPointer { xp in
                weight.data.withUnsafeBufferPointer { wp in
                    if isDepthwise {
                        ConvKernels.depthwise(geometry, input: xp.baseAddress!, weight: wp.baseAddress!,
                                              bias: bias?.data, activation: activation, output: out.baseAddress!)
                    } else {
                        ConvKernels.gemmConv(geometry, groups: groups, input: xp.baseAddress!, weight: wp.baseAddress!,
                                             output: out.baseAddress!)
                        Epilogue.apply(out.baseAddress!, rows: n * oh * ow, columns: outChannels,
                                       bias: bias, activation: activation)
                    }
                }
            }
        }
    }
}

public struct ConvGeometry: Sendable {
    public var batch, inHeight, inWidth, inChannels, outHeight, outWidth, outChannels: Int
    public var kernelH, kernelW, strideH, strideW, dilationH, dilationW, padTop, padLeft: Int

    var isPointwise: Bool {
        kernelH == 1 && kernelW == 1 && strideH == 1 && strideW == 1 && padTop == 0 && padLeft == 0
            && outHeight == inHeight && outWidth == inWidth
    }
}

public enum ConvKernels {
    /// Convolution as GEMM: a 1x1 stride-1 convolution multiplies the input directly; anything else
    /// gathers patches (im2col, rows ordered ky, kx, channel to match OHWI weights) one image at a time.
    public static func gemmConv(_ g: ConvGeometry, groups: Int, input: UnsafePointer<Float>,
                                weight: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>) {
        let inPerGroup = g.inChannels / groups, outPerGroup = g.outChannels / groups
        let patch = g.kernelH * g.kernelW * inPerGroup
        let pixelsOut = g.outHeight * g.outWidth
        if g.isPointwise {
            for group in 0..<groups {
                BLAS.gemm(m: g.batch * pixelsOut, n: outPerGroup, k: inPerGroup,
                          a: input + group * inPerGroup, lda: g.inChannels,
                          b: weight + group * outPerGroup * patch, ldb: patch, transposeB: true,
                          c: output + group * outPerGroup, ldc: g.outChannels)
            }
            return
        }
        let columns = UnsafeMutablePointer<Float>.allocate(capacity: pixelsOut * patch)
        defer { columns.deallocate() }
        for image in 0..<g.batch {
            let imageIn = input + image * g.inHeight * g.inWidth * g.inChannels
            let imageOut = output + image * pixelsOut * g.outChannels
            for group in 0..<groups {
                im2col(g, input: imageIn, channelOffset: group * inPerGroup, channels: inPerGroup, columns: columns)
                BLAS.gemm(m: pixelsOut, n: outPerGroup, k: patch, a: columns, lda: patch,
                          b: weight + group * outPerGroup * patch, ldb: patch, transposeB: true,
                          c: imageOut + group * outPerGroup, ldc: g.outChannels)
            }
        }
    }

    static func im2col(_ g: ConvGeometry, input: UnsafePointer<Float>, channelOffset: Int, channels: Int,
                       columns: UnsafeMutablePointer<Float>) {
        let patch = g.kernelH * g.kernelW * channels
        let inBox = UnsafeSendable(input), colBox = UnsafeSendable(columns)
        Parallel.forEachChunk(g.outHeight, minChunk: 4) { rows in
            let input = inBox.value, columns = colBox.value
            for oy in rows {
                for ox in 0..<g.outWidth {
                    var dst = columns + (oy * g.outWidth + ox) * patch
                    for ky in 0..<g.kernelH {
                        let iy = oy * g.strideH - g.padTop + ky * g.dilationH
                        for kx in 0..<g.kernelW {
                            let ix = ox * g.strideW - g.padLeft + kx * g.dilationW
                            if iy < 0 || iy >= g.inHeight || ix < 0 || ix >= g.inWidth {
                                dst.update(repeating: 0, count: channels)
                            } else {
                                dst.update(from: input + (iy * g.inWidth + ix) * g.inChannels + channelOffset,
                                           count: channels)
                            }
                            dst += channels
                        }
                    }
                }
            }
        }
    }

    /// Direct depthwise convolution (one filter per channel), vectorised over channels, with the bias
    /// and activation fused. Weight layout [kh, kw, C].
    public static func depthwise(_ g: ConvGeometry, input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                                 bias: [Float]?, activation: Activation, output: UnsafeMutablePointer<Float>) {
        let channels = g.inChannels
        let inBox = UnsafeSendable(input), wBox = UnsafeSendable(weight), outBox = UnsafeSendable(output)
        let zeros = [Float](repeating: 0, count: channels)
        let biasValues = bias ?? zeros
        Parallel.forEachChunk(g.batch * g.outHeight, minChunk: 2) { rows in
            let input = inBox.value, weight = wBox.value, output = outBox.value
            biasValues.withUnsafeBufferPointer { biasPointer in
                let b = biasPointer.baseAddress!
                for row in rows {
                    let image = row / g.outHeight, oy = row % g.outHeight
                    let imageIn = input + image * g.inHeight * g.inWidth * channels
                    let rowOut = output + row * g.outWidth * channels
                    for ox in 0..<g.outWidth {
                        let acc = rowOut + ox * channels
                        acc.update(from: b, count: channels)
                        for ky in 0..<g.kernelH {
                            let iy = oy * g.strideH - g.padTop + ky * g.dilationH
                            if iy < 0 || iy >= g.inHeight { continue }
                            for kx in 0..<g.kernelW {
                                let ix = ox * g.strideW - g.padLeft + kx * g.dilationW
                                if ix < 0 || ix >= g.inWidth { continue }
                                let src = imageIn + (iy * g.inWidth + ix) * channels
                                let w = weight + (ky * g.kernelW + kx) * channels
                                for c in 0..<channels { acc[c] += src[c] * w[c] }
                            }
                        }
                    }
                    activation.apply(rowOut, count: g.outWidth * channels)
                }
            }
        }
    }
}
