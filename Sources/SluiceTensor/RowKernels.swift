import Foundation

/// Single-pass kernels over the rows (pixels) of channels-last buffers, for blocks that keep their
/// activations in preallocated workspaces (HorNet's gnConv): LayerNorm with the pending bias of the
/// previous GEMM folded in, the interleaving merge of a global filter, mean pooling. Every kernel splits
/// rows over `Parallel.threads`; each row is computed the same way whichever thread runs it, so results
/// do not depend on the thread count. (The tiled GEMM with fused epilogues is `BLAS.gemm` in Gemm.swift.)
public enum RowKernels {
    @inline(__always)
    static func rowsPerChunk(_ columns: Int) -> Int { max(1, 8192 / max(columns, 1)) }

    /// Mean and 1/sqrt(var + eps) of one row (biased variance, two passes).
    @inline(__always)
    static func moments(_ v: UnsafePointer<Float>, _ n: Int, _ eps: Float) -> (Float, Float) {
        var sum: Float = 0
        for c in 0..<n { sum += v[c] }
        let mean = sum / Float(n)
        var squares: Float = 0
        for c in 0..<n { let d = v[c] - mean; squares += d * d }
        return (mean, 1 / (squares / Float(n) + eps).squareRoot())
    }

    /// LayerNorm over `channels` of each row: out = (x − mean) / sqrt(var + eps) · weight + bias.
    /// When `addBias` is given, x += addBias is done first and written back to `input` (the bias of the
    /// GEMM that accumulated into x). `input` and `output` may have row strides larger than `channels`.
    public static func layerNorm(rows: Int, channels: Int, input: UnsafeMutablePointer<Float>, inputStride: Int,
                                 output: UnsafeMutablePointer<Float>, outputStride: Int,
                                 weight: UnsafePointer<Float>, bias: UnsafePointer<Float>, eps: Float,
                                 addBias: UnsafePointer<Float>? = nil) {
        let box = UnsafeSendable((input, output, weight, bias, addBias))
        Parallel.forEachChunk(rows, minChunk: rowsPerChunk(channels)) { range in
            let (input, output, weight, bias, addBias) = box.value
            for row in range {
                let x = input + row * inputStride, y = output + row * outputStride
                if let addBias { for c in 0..<channels { x[c] += addBias[c] } }
                let (mean, inv) = moments(x, channels, eps)
                for c in 0..<channels { y[c] = (x[c] - mean) * inv * weight[c] + bias[c] }
            }
        }
    }

    /// x += bias on every row.
    public static func addBias(rows: Int, channels: Int, data: UnsafeMutablePointer<Float>, stride: Int,
                               bias: UnsafePointer<Float>) {
        let box = UnsafeSendable((data, bias))
        Parallel.forEachChunk(rows, minChunk: rowsPerChunk(channels)) { range in
            let (data, bias) = box.value
            for row in range {
                let x = data + row * stride
                for c in 0..<channels { x[c] += bias[c] }
            }
        }
    }


    /// LayerNorm of each row into two halves: out1 = LN(x)[0 ..< C/2], out2 = LN(x)[C/2 ..< C] (each
    /// contiguous [rows, C/2]), after x += addBias (written back).
    public static func layerNormSplit(rows: Int, channels: Int, input: UnsafeMutablePointer<Float>, inputStride: Int,
                                      first: UnsafeMutablePointer<Float>, second: UnsafeMutablePointer<Float>,
                                      weight: UnsafePointer<Float>, bias: UnsafePointer<Float>, eps: Float,
                                      addBias: UnsafePointer<Float>? = nil) {
        precondition(channels % 2 == 0, "split layer norm needs an even channel count, got \(channels)")
        let half = channels / 2
        let box = UnsafeSendable((input, first, second, weight, bias, addBias))
        Parallel.forEachChunk(rows, minChunk: rowsPerChunk(channels)) { range in
            let (input, first, second, weight, bias, addBias) = box.value
            for row in range {
                let x = input + row * inputStride
                if let addBias { for c in 0..<channels { x[c] += addBias[c] } }
                let (mean, inv) = moments(x, channels, eps)
                let y1 = first + row * half, y2 = second + row * half
                for c in 0..<half { y1[c] = (x[c] - mean) * inv * weight[c] + bias[c] }
                for c in 0..<half { y2[c] = (x[half + c] - mean) * inv * weight[half + c] + bias[half + c] }
            }
        }
    }

    /// Interleaves two [rows, C/2] buffers channel by channel (channel 2i from `first`, 2i+1 from
    /// `second`: `torch.cat([a.unsqueeze(2), b.unsqueeze(2)], 2).reshape(B, C, H, W)`) and applies a
    /// LayerNorm over the C channels, writing rows of `output` (stride `outputStride`).
    public static func interleaveLayerNorm(rows: Int, channels: Int, first: UnsafePointer<Float>,
                                           second: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>,
                                           outputStride: Int, weight: UnsafePointer<Float>,
                                           bias: UnsafePointer<Float>, eps: Float) {
        precondition(channels % 2 == 0, "interleave needs an even channel count, got \(channels)")
        let half = channels / 2
        let box = UnsafeSendable((first, second, output, weight, bias))
        Parallel.forEachChunk(rows, minChunk: rowsPerChunk(channels)) { range in
            let (first, second, output, weight, bias) = box.value
            for row in range {
                let a = first + row * half, b = second + row * half, y = output + row * outputStride
                for c in 0..<half { y[2 * c] = a[c]; y[2 * c + 1] = b[c] }
                let (mean, inv) = moments(y, channels, eps)
                for c in 0..<channels { y[c] = (y[c] - mean) * inv * weight[c] + bias[c] }
            }
        }
    }

    /// Mean over the pixels of each image: [images, pixels, C] -> [images, C] (accumulated in order).
    public static func meanPool(images: Int, pixels: Int, channels: Int, input: UnsafePointer<Float>,
                                output: UnsafeMutablePointer<Float>) {
        for image in 0..<images {
            let dst = output + image * channels
            for c in 0..<channels { dst[c] = 0 }
            for p in 0..<pixels {
                let src = input + (image * pixels + p) * channels
                for c in 0..<channels { dst[c] += src[c] }
            }
            let inv = 1 / Float(pixels)
            for c in 0..<channels { dst[c] *= inv }
        }
    }
}

extension Conv2d {
    /// Runs this depthwise convolution (bias included, if any) on a raw NHWC buffer into `output`,
    /// without allocating a tensor: for workspaces that are reused across blocks.
    public func depthwise(input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>,
                          batch: Int, height: Int, width: Int) {
        precondition(isDepthwise, "depthwise(input:output:) on a non-depthwise convolution")
        let (oh, ow) = outputSize(height: height, width: width)
        let pad = padding(forHeight: height, width: width)
        let geometry = ConvGeometry(batch: batch, inHeight: height, inWidth: width, inChannels: inChannels,
                                    outHeight: oh, outWidth: ow, outChannels: outChannels,
                                    kernelH: kernel.h, kernelW: kernel.w, strideH: stride.h, strideW: stride.w,
                                    dilationH: dilation.h, dilationW: dilation.w, padTop: pad.top, padLeft: pad.left)
        weight.data.withUnsafeBufferPointer { wp in
            ConvKernels.depthwise(geometry, input: input, weight: wp.baseAddress!, bias: bias?.data,
                                  activation: .identity, output: output)
        }
    }
}
