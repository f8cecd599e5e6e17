import Foundation

/// A 2-D real Fourier filter on channels-last maps: y = irfft2(rfft2(x) ⊙ W) with PyTorch's 'ortho'
/// normalisation on both transforms (`torch.fft.rfft2(x, norm='ortho')`, `irfft2(X, s=(H, W), norm='ortho')`),
/// as GFNet/HorNet's global filter uses it. The grids are small (7×7, 14×14, not powers of two), so the
/// transforms are direct separable DFTs with twiddles precomputed in Double: a real DFT along W
/// (W/2+1 bins), a complex DFT along H, the per-bin complex product, then the inverse DFT along H and a
/// complex-to-real DFT along W that, like pocketfft's c2r, ignores the imaginary part of the DC and
/// Nyquist bins. Channels are innermost and contiguous, so every loop is a vector loop over channels.
public struct SpectralFilter2D: Sendable {
    public let height: Int, width: Int
    /// Frequency bins along W: width / 2 + 1.
    public var frequencyWidth: Int { width / 2 + 1 }
    /// cos / sin(2π v w / W), [frequencyWidth, width].
    let cosW: [Float], sinW: [Float]
    /// cos / sin(2π u h / H), [height, height] (symmetric).
    let cosH: [Float], sinH: [Float]
    /// c2r multiplicity of each bin: 1 for DC (and Nyquist when W is even), else 2.
    let binWeight: [Float]

    public init(height: Int, width: Int) {
        precondition(height > 0 && width > 0, "empty grid \(height)x\(width)")
        self.height = height
        self.width = width
        let wf = width / 2 + 1
        func twiddles(_ rows: Int, _ columns: Int, _ n: Int) -> ([Float], [Float]) {
            var c = [Float](repeating: 0, count: rows * columns), s = c
            for k in 0..<rows {
                for j in 0..<columns {
                    let angle = 2 * Double.pi * Double((k * j) % n) / Double(n)
                    c[k * columns + j] = Float(Foundation.cos(angle))
                    s[k * columns + j] = Float(Foundation.sin(angle))
                }
            }
            return (c, s)
        }
        (cosW, sinW) = twiddles(wf, width, width)
        (cosH, sinH) = twiddles(height, height, height)
        binWeight = (0..<wf).map { v in v == 0 || (width % 2 == 0 && v == width / 2) ? 1 : 2 }
    }

    /// Floats of scratch `apply` needs per worker for a block of `channels` channels.
    public func scratchCount(channels: Int) -> Int { 4 * height * frequencyWidth * channels }

    /// Filters `channels` channels of one image. `input` is [H, W, ·] with `inputStride` floats per pixel
    /// (the channels start at `input`); `output` likewise with `outputStride`. `weightRe`/`weightIm` are
    /// [H, frequencyWidth, weightStride] (channel innermost, starting at the block's first channel);
    /// `scale` multiplies the product (the two 'ortho' factors, 1 / (H W), go here).
    /// `scratch` holds `scratchCount(channels:)` floats.
    public func apply(input: UnsafePointer<Float>, inputStride: Int,
                      output: UnsafeMutablePointer<Float>, outputStride: Int, channels nb: Int,
                      weightRe: UnsafePointer<Float>, weightIm: UnsafePointer<Float>, weightStride: Int,
                      scale: Float, scratch: UnsafeMutablePointer<Float>) {
        let (h, w, wf) = (height, width, frequencyWidth)
        let plane = h * wf * nb
        let ar = scratch, ai = scratch + plane, xr = scratch + 2 * plane, xi = scratch + 3 * plane
        cosW.withUnsafeBufferPointer { cw in
        sinW.withUnsafeBufferPointer { sw in
        cosH.withUnsafeBufferPointer { ch in
        sinH.withUnsafeBufferPointer { sh in
            // A: real DFT along W. A[y, v] = Σ_x x[y, x] e^{-2πi v x / W}.
            for y in 0..<h {
                for v in 0..<wf {
                    let re = ar + (y * wf + v) * nb, im = ai + (y * wf + v) * nb
                    for c in 0..<nb { re[c] = 0; im[c] = 0 }
                    for x in 0..<w {
                        let src = input + (y * w + x) * inputStride
                        let cv = cw[v * w + x], sv = -sw[v * w + x]
                        for c in 0..<nb { re[c] += src[c] * cv; im[c] += src[c] * sv }
                    }
                }
            }
            // B: complex DFT along H, then the filter. X[u, v] = Σ_y A[y, v] e^{-2πi u y / H}.
            for u in 0..<h {
                for v in 0..<wf {
                    let re = xr + (u * wf + v) * nb, im = xi + (u * wf + v) * nb
                    for c in 0..<nb { re[c] = 0; im[c] = 0 }
                    for y in 0..<h {
                        let a = ar + (y * wf + v) * nb, b = ai + (y * wf + v) * nb
                        let cv = ch[u * h + y], sv = sh[u * h + y]
                        // (a + ib)(cv - i sv)
                        for c in 0..<nb {
                            re[c] += a[c] * cv + b[c] * sv
                            im[c] += b[c] * cv - a[c] * sv
                        }
                    }
                    let wr = weightRe + (u * wf + v) * weightStride, wi = weightIm + (u * wf + v) * weightStride
                    for c in 0..<nb {
                        let pr = re[c] * wr[c] - im[c] * wi[c]
                        let pi = re[c] * wi[c] + im[c] * wr[c]
                        re[c] = pr * scale
                        im[c] = pi * scale
                    }
                }
            }
            // D: inverse complex DFT along H into A. Z[y, v] = Σ_u Y[u, v] e^{+2πi u y / H}.
            for y in 0..<h {
                for v in 0..<wf {
                    let re = ar + (y * wf + v) * nb, im = ai + (y * wf + v) * nb
                    for c in 0..<nb { re[c] = 0; im[c] = 0 }
                    for u in 0..<h {
                        let a = xr + (u * wf + v) * nb, b = xi + (u * wf + v) * nb
                        let cv = ch[y * h + u], sv = sh[y * h + u]
                        // (a + ib)(cv + i sv)
                        for c in 0..<nb {
                            re[c] += a[c] * cv - b[c] * sv
                            im[c] += b[c] * cv + a[c] * sv
                        }
                    }
                }
            }
            // E: complex-to-real DFT along W. y[x] = Σ_v m_v Re(Z[v] e^{+2πi v x / W}).
            binWeight.withUnsafeBufferPointer { m in
                for y in 0..<h {
                    for x in 0..<w {
                        let dst = output + (y * w + x) * outputStride
                        for c in 0..<nb { dst[c] = 0 }
                        for v in 0..<wf {
                            let a = ar + (y * wf + v) * nb, b = ai + (y * wf + v) * nb
                            let cv = m[v] * cw[v * w + x], sv = -m[v] * sw[v * w + x]
                            for c in 0..<nb { dst[c] += a[c] * cv + b[c] * sv }
                        }
                    }
                }
            }
        }
        }
        }
        }
    }
}

public enum GridResize {
    /// Bilinear resize of `planes` planes [inH, inW] to [outH, outW] with align_corners=True, as PyTorch's
    /// CPU `F.interpolate(mode='bilinear', align_corners=True)` computes it in float32.
    public static func bilinearAlignCorners(_ input: [Float], planes: Int, inHeight: Int, inWidth: Int,
                                            outHeight: Int, outWidth: Int) -> [Float] {
        precondition(input.count == planes * inHeight * inWidth, "bilinear resize: \(input.count) values")
        func axis(_ inSize: Int, _ outSize: Int) -> [(Int, Int, Float, Float)] {
            let scale: Float = outSize > 1 ? Float(inSize - 1) / Float(outSize - 1) : 0
            return (0..<outSize).map { o in
                let real = scale * Float(o)
                let i0 = Int(real)
                let i1 = i0 + (i0 < inSize - 1 ? 1 : 0)
                let l1 = real - Float(i0)
                return (i0, i1, 1 - l1, l1)
            }
        }
        let ys = axis(inHeight, outHeight), xs = axis(inWidth, outWidth)
        var out = [Float](repeating: 0, count: planes * outHeight * outWidth)
        for p in 0..<planes {
            let src = p * inHeight * inWidth
            for (oy, (y0, y1, h0, h1)) in ys.enumerated() {
                for (ox, (x0, x1, w0, w1)) in xs.enumerated() {
                    let top = w0 * input[src + y0 * inWidth + x0] + w1 * input[src + y0 * inWidth + x1]
                    let bottom = w0 * input[src + y1 * inWidth + x0] + w1 * input[src + y1 * inWidth + x1]
                    out[(p * outHeight + oy) * outWidth + ox] = h0 * top + h1 * bottom
                }
            }
        }
        return out
    }
}
