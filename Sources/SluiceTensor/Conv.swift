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
    /// The weights transformed for Winograd F(2x2, 3x3), when `usingWinograd()` prepared them.
    public private(set) var winograd: Winograd3x3?

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
        folded.winograd = winograd == nil ? nil : Winograd3x3(ohwi: folded.weight)
        return folded
    }

    /// Whether Winograd F(2x2, 3x3) applies: a dense 3x3, stride 1, undilated, padding 1 convolution.
    public var allowsWinograd: Bool {
        kernel == (3, 3) && stride == (1, 1) && dilation == (1, 1) && groups == 1 && padding == .symmetric(1)
    }

    /// This convolution computed by Winograd F(2x2, 3x3) (weights transformed now, once), where it
    /// applies; otherwise unchanged. Worth it for wide layers (2.25x fewer multiply-adds than im2col).
    public func usingWinograd() -> Conv2d {
        guard allowsWinograd else { return self }
        var copy = self
        copy.winograd = Winograd3x3(ohwi: weight)
        return copy
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
                    if let winograd {
                        withOptionalPointer(bias?.data) { bp in
                            winograd.apply(batch: n, height: h, width: w, input: xp.baseAddress!, bias: bp,
                                           activation: activation, output: out.baseAddress!)
                        }
                    } else if isDepthwise {
                        ConvKernels.depthwise(geometry, input: xp.baseAddress!, weight: wp.baseAddress!,
                                              bias: bias?.data, activation: activation, output: out.baseAddress!)
                    } else {
                        withOptionalPointer(bias?.data) { bp in
                            ConvKernels.gemmConv(geometry, groups: groups, input: xp.baseAddress!,
                                                 weight: wp.baseAddress!, bias: bp, activation: activation,
                                                 output: out.baseAddress!)
                        }
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
    /// gathers patches (im2col, rows ordered ky, kx, channel to match OHWI weights) a strip of output
    /// rows at a time, each strip's patches small enough to stay in L2 for its GEMM, strips split
    /// across threads (each strip's GEMM then runs on its own thread).
    public static func gemmConv(_ g: ConvGeometry, groups: Int, input: UnsafePointer<Float>,
                                weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?, activation: Activation,
                                output: UnsafeMutablePointer<Float>) {
        let inPerGroup = g.inChannels / groups, outPerGroup = g.outChannels / groups
        let patch = g.kernelH * g.kernelW * inPerGroup
        let pixelsOut = g.outHeight * g.outWidth
        if g.isPointwise {
            for group in 0..<groups {
                BLAS.gemm(m: g.batch * pixelsOut, n: outPerGroup, k: inPerGroup,
                          a: input + group * inPerGroup, lda: g.inChannels,
                          b: weight + group * outPerGroup * patch, ldb: patch,
                          c: output + group * outPerGroup, ldc: g.outChannels,
                          epilogue: .bias(bias.map { $0 + group * outPerGroup }, activation: activation))
            }
            return
        }
        // ~128 KiB of patches per strip (at least 16 GEMM rows), and a multiple of the thread count of
        // strips per image where there are rows enough, so no thread idles while another ends its last.
        let threads = Parallel.threads, rowsForCache = max(1, max(16, 32768 / patch) / g.outWidth)
        let fewestStrips = (g.outHeight + rowsForCache - 1) / rowsForCache
        let targetStrips = min(g.outHeight, (fewestStrips + threads - 1) / threads * threads)
        let stripRows = (g.outHeight + targetStrips - 1) / targetStrips
        let stripsPerImage = (g.outHeight + stripRows - 1) / stripRows
        let strips = g.batch * stripsPerImage
        let box = UnsafeSendable((input, weight, bias, output))
        Parallel.forEachChunk(strips) { range in
            let (input, weight, bias, output) = box.value
            // One patch buffer per thread and call (a heap block: the mmap threshold is raised).
            let columns = UnsafeMutablePointer<Float>.allocate(capacity: stripRows * g.outWidth * patch)
            defer { columns.deallocate() }
            for strip in range {
                let image = strip / stripsPerImage
                let rows = (strip % stripsPerImage) * stripRows ..< min(g.outHeight, (strip % stripsPerImage + 1) * stripRows)
                let imageIn = input + image * g.inHeight * g.inWidth * g.inChannels
                let stripOut = output + (image * pixelsOut + rows.lowerBound * g.outWidth) * g.outChannels
                for group in 0..<groups {
                    im2col(g, input: imageIn, rows: rows, channelOffset: group * inPerGroup, channels: inPerGroup,
                           columns: columns)
                    BLAS.gemm(m: rows.count * g.outWidth, n: outPerGroup, k: patch, a: columns, lda: patch,
                              b: weight + group * outPerGroup * patch, ldb: patch,
                              c: stripOut + group * outPerGroup, ldc: g.outChannels,
                              epilogue: .bias(bias.map { $0 + group * outPerGroup }, activation: activation))
                }
            }
        }
    }

    /// The patches of output rows `rows` of one image, one row of `columns` per output pixel. Along x
    /// the taps inside the image are one contiguous run of input (when undilated), copied at once.
    static func im2col(_ g: ConvGeometry, input: UnsafePointer<Float>, rows: Range<Int>, channelOffset: Int,
                       channels: Int, columns: UnsafeMutablePointer<Float>) {
        let patch = g.kernelH * g.kernelW * channels
        let contiguous = g.dilationW == 1 && channels == g.inChannels
        var dst = columns
        for oy in rows {
            for ox in 0..<g.outWidth {
                let ix0 = ox * g.strideW - g.padLeft
                let kxLo = ix0 >= 0 ? 0 : min(g.kernelW, (-ix0 + g.dilationW - 1) / g.dilationW)
                let kxHi = ix0 > g.inWidth - 1 ? kxLo : max(kxLo, min(g.kernelW, (g.inWidth - 1 - ix0) / g.dilationW + 1))
                for ky in 0..<g.kernelH {
                    let iy = oy * g.strideH - g.padTop + ky * g.dilationH
                    if iy < 0 || iy >= g.inHeight || kxLo == kxHi {
                        for i in 0..<(g.kernelW * channels) { dst[i] = 0 }
                        dst += g.kernelW * channels
                        continue
                    }
                    for i in 0..<(kxLo * channels) { dst[i] = 0 }
                    dst += kxLo * channels
                    let rowIn = input + iy * g.inWidth * g.inChannels + channelOffset
                    if contiguous {
                        let count = (kxHi - kxLo) * channels
                        copyShort(dst, rowIn + (ix0 + kxLo) * g.inChannels, count)
                        dst += count
                    } else {
                        for kx in kxLo..<kxHi {
                            let src = rowIn + (ix0 + kx * g.dilationW) * g.inChannels
                            copyShort(dst, src, channels)
                            dst += channels
                        }
                    }
                    for i in 0..<((g.kernelW - kxHi) * channels) { dst[i] = 0 }
                    dst += (g.kernelW - kxHi) * channels
                }
            }
        }
        assert(dst == columns + rows.count * g.outWidth * patch)
    }

    /// Copies a short run of floats (a few taps' channels) in SIMD8 pieces; memmove's call costs more
    /// than the copy at these sizes.
    @inline(__always)
    static func copyShort(_ dst: UnsafeMutablePointer<Float>, _ src: UnsafePointer<Float>, _ count: Int) {
        var i = 0
        while i + 8 <= count {
            UnsafeMutableRawPointer(dst + i).storeBytes(of: UnsafeRawPointer(src + i).loadUnaligned(as: SIMD8<Float>.self),
                                                        as: SIMD8<Float>.self)
            i += 8
        }
        while i < count { dst[i] = src[i]; i += 1 }
    }

    /// Direct depthwise convolution (one filter per channel), with the bias and activation fused.
    /// Weight layout [kh, kw, C]. Channels go in SIMD8 blocks (a scalar loop takes the C % 8 tail), and
    /// output pixels whose taps all lie inside the image along x are done four at a time so each weight
    /// load feeds four FMAs. Taps outside the image are skipped by clamping the ky/kx ranges per row and
    /// per pixel, so there is no padded copy and any stride/dilation/(asymmetric) padding works. Every
    /// output sums its taps in the same order (bias, then ky, then kx) whichever path computes it, and
    /// work is split by output rows, so the result does not depend on the thread count.
    public static func depthwise(_ g: ConvGeometry, input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                                 bias: [Float]?, activation: Activation, output: UnsafeMutablePointer<Float>) {
        guard g.outHeight > 0, g.outWidth > 0, g.inChannels > 0 else { return }
        let inBox = UnsafeSendable(input), wBox = UnsafeSendable(weight), outBox = UnsafeSendable(output)
        let biasValues = bias ?? [Float](repeating: 0, count: g.inChannels)
        Parallel.forEachChunk(g.batch * g.outHeight, minChunk: 2) { rows in
            biasValues.withUnsafeBufferPointer { b in
                for row in rows {
                    depthwiseRow(g, row: row, input: inBox.value, weight: wBox.value, bias: b.baseAddress!,
                                 output: outBox.value)
                    activation.apply(outBox.value + row * g.outWidth * g.inChannels, count: g.outWidth * g.inChannels)
                }
            }
        }
    }

    /// One output row (`row` = image * outHeight + oy) of the depthwise convolution, before the activation.
    @inline(__always)
    static func depthwiseRow(_ g: ConvGeometry, row: Int, input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                             bias: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>) {
        typealias V = SIMD8<Float>
        let c = g.inChannels, simdChannels = c & ~7
        let (kw, sw, dw, w) = (g.kernelW, g.strideW, g.dilationW, g.inWidth)
        let image = row / g.outHeight, oy = row % g.outHeight
        let imageIn = input + image * g.inHeight * w * c
        let rowOut = output + row * g.outWidth * c
        // Kernel rows inside the image for this output row: ky in kyLo..<kyHi.
        let iy0 = oy * g.strideH - g.padTop
        let kyLo = iy0 >= 0 ? 0 : (-iy0 + g.dilationH - 1) / g.dilationH
        let kyHi = iy0 > g.inHeight - 1 ? kyLo : max(kyLo, min(g.kernelH, (g.inHeight - 1 - iy0) / g.dilationH + 1))
        // Output columns whose kw taps are all inside the image: fullLo...fullHi.
        let fullLo = (g.padLeft + sw - 1) / sw
        let lastStart = w - 1 - (kw - 1) * dw + g.padLeft
        let fullHi = lastStart < 0 ? -1 : min(g.outWidth - 1, lastStart / sw)
        let pixelStride = sw * c

        @inline(__always) func load(_ p: UnsafePointer<Float>) -> V {
            UnsafeRawPointer(p).loadUnaligned(as: V.self)
        }
        @inline(__always) func store(_ v: V, _ p: UnsafeMutablePointer<Float>) {
            UnsafeMutableRawPointer(p).storeBytes(of: v, as: V.self)
        }

        var ox = 0
        while ox < g.outWidth {
            let ix0 = ox * sw - g.padLeft
            if ox >= fullLo && ox + 3 <= fullHi {
                // Four output pixels, all kw taps in range.
                let out = rowOut + ox * c
                var cb = 0
                // 4 pixels x 16 channels: eight independent FMA chains.
                while cb + 16 <= simdChannels {
                    let b = load(bias + cb), bb = load(bias + cb + 8)
                    var a0 = b, a1 = b, a2 = b, a3 = b, e0 = bb, e1 = bb, e2 = bb, e3 = bb
                    var ky = kyLo
                    while ky < kyHi {
                        let src = imageIn + ((iy0 + ky * g.dilationH) * w + ix0) * c + cb
                        let wRow = weight + ky * kw * c + cb
                        for kx in 0..<kw {
                            let wv = load(wRow + kx * c), wv2 = load(wRow + kx * c + 8)
                            let p = src + kx * dw * c
                            a0.addProduct(load(p), wv)
                            e0.addProduct(load(p + 8), wv2)
                            a1.addProduct(load(p + pixelStride), wv)
                            e1.addProduct(load(p + pixelStride + 8), wv2)
                            a2.addProduct(load(p + 2 * pixelStride), wv)
                            e2.addProduct(load(p + 2 * pixelStride + 8), wv2)
                            a3.addProduct(load(p + 3 * pixelStride), wv)
                            e3.addProduct(load(p + 3 * pixelStride + 8), wv2)
                        }
                        ky += 1
                    }
                    store(a0, out + cb); store(e0, out + cb + 8)
                    store(a1, out + c + cb); store(e1, out + c + cb + 8)
                    store(a2, out + 2 * c + cb); store(e2, out + 2 * c + cb + 8)
                    store(a3, out + 3 * c + cb); store(e3, out + 3 * c + cb + 8)
                    cb += 16
                }
                if cb < simdChannels {
                    let b = load(bias + cb)
                    var a0 = b, a1 = b, a2 = b, a3 = b
                    var ky = kyLo
                    while ky < kyHi {
                        let src = imageIn + ((iy0 + ky * g.dilationH) * w + ix0) * c + cb
                        let wRow = weight + ky * kw * c + cb
                        for kx in 0..<kw {
                            let wv = load(wRow + kx * c)
                            let p = src + kx * dw * c
                            a0.addProduct(load(p), wv)
                            a1.addProduct(load(p + pixelStride), wv)
                            a2.addProduct(load(p + 2 * pixelStride), wv)
                            a3.addProduct(load(p + 3 * pixelStride), wv)
                        }
                        ky += 1
                    }
                    store(a0, out + cb)
                    store(a1, out + c + cb)
                    store(a2, out + 2 * c + cb)
                    store(a3, out + 3 * c + cb)
                }
                if simdChannels < c {
                    for pixel in 0..<4 {
                        depthwiseScalar(g, channels: simdChannels..<c, iy0: iy0, kyRange: kyLo..<kyHi,
                                        ix0: ix0 + pixel * sw, kxRange: 0..<kw, image: imageIn, weight: weight,
                                        bias: bias, output: out + pixel * c)
                    }
                }
                ox += 4
            } else {
                // One output pixel near the left/right border: only the kx taps inside the image.
                let kxLo = ix0 >= 0 ? 0 : (-ix0 + dw - 1) / dw
                let kxHi = ix0 > w - 1 ? kxLo : max(kxLo, min(kw, (w - 1 - ix0) / dw + 1))
                let out = rowOut + ox * c
                var cb = 0
                // 64 channels at a time: eight independent FMA chains.
                while cb + 64 <= simdChannels {
                    var a0 = load(bias + cb), a1 = load(bias + cb + 8)
                    var a2 = load(bias + cb + 16), a3 = load(bias + cb + 24)
                    var a4 = load(bias + cb + 32), a5 = load(bias + cb + 40)
                    var a6 = load(bias + cb + 48), a7 = load(bias + cb + 56)
                    var ky = kyLo
                    while ky < kyHi {
                        let src = imageIn + ((iy0 + ky * g.dilationH) * w + ix0) * c + cb
                        let wRow = weight + ky * kw * c + cb
                        var kx = kxLo
                        while kx < kxHi {
                            let p = src + kx * dw * c, q = wRow + kx * c
                            a0.addProduct(load(p), load(q))
                            a1.addProduct(load(p + 8), load(q + 8))
                            a2.addProduct(load(p + 16), load(q + 16))
                            a3.addProduct(load(p + 24), load(q + 24))
                            a4.addProduct(load(p + 32), load(q + 32))
                            a5.addProduct(load(p + 40), load(q + 40))
                            a6.addProduct(load(p + 48), load(q + 48))
                            a7.addProduct(load(p + 56), load(q + 56))
                            kx += 1
                        }
                        ky += 1
                    }
                    store(a0, out + cb); store(a1, out + cb + 8)
                    store(a2, out + cb + 16); store(a3, out + cb + 24)
                    store(a4, out + cb + 32); store(a5, out + cb + 40)
                    store(a6, out + cb + 48); store(a7, out + cb + 56)
                    cb += 64
                }
                // Then 32 channels at a time: four chains.
                if cb + 32 <= simdChannels {
                    var a0 = load(bias + cb), a1 = load(bias + cb + 8)
                    var a2 = load(bias + cb + 16), a3 = load(bias + cb + 24)
                    var ky = kyLo
                    while ky < kyHi {
                        let src = imageIn + ((iy0 + ky * g.dilationH) * w + ix0) * c + cb
                        let wRow = weight + ky * kw * c + cb
                        var kx = kxLo
                        while kx < kxHi {
                            let p = src + kx * dw * c, q = wRow + kx * c
                            a0.addProduct(load(p), load(q))
                            a1.addProduct(load(p + 8), load(q + 8))
                            a2.addProduct(load(p + 16), load(q + 16))
                            a3.addProduct(load(p + 24), load(q + 24))
                            kx += 1
                        }
                        ky += 1
                    }
                    store(a0, out + cb); store(a1, out + cb + 8)
                    store(a2, out + cb + 16); store(a3, out + cb + 24)
                    cb += 32
                }
                while cb < simdChannels {
                    var a = load(bias + cb)
                    var ky = kyLo
                    while ky < kyHi {
                        let src = imageIn + ((iy0 + ky * g.dilationH) * w + ix0) * c + cb
                        let wRow = weight + ky * kw * c + cb
                        var kx = kxLo
                        while kx < kxHi {
                            a.addProduct(load(src + kx * dw * c), load(wRow + kx * c))
                            kx += 1
                        }
                        ky += 1
                    }
                    store(a, out + cb)
                    cb += 8
                }
                if simdChannels < c {
                    depthwiseScalar(g, channels: simdChannels..<c, iy0: iy0, kyRange: kyLo..<kyHi, ix0: ix0,
                                    kxRange: kxLo..<kxHi, image: imageIn, weight: weight, bias: bias,
                                    output: out)
                }
                ox += 1
            }
        }
    }

    /// The channels past the last full SIMD8 block of one output pixel.
    @inline(__always)
    static func depthwiseScalar(_ g: ConvGeometry, channels: Range<Int>, iy0: Int, kyRange: Range<Int>, ix0: Int,
                                kxRange: Range<Int>, image: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                                bias: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>) {
        let c = g.inChannels
        for ch in channels {
            var a = bias[ch]
            for ky in kyRange {
                let src = image + ((iy0 + ky * g.dilationH) * g.inWidth + ix0) * c + ch
                let wRow = weight + ky * g.kernelW * c + ch
                for kx in kxRange { a.addProduct(src[kx * g.dilationW * c], wRow[kx * c]) }
            }
            output[ch] = a
        }
    }
}
