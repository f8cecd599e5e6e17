/// 3x3 convolutions (stride 1, padding 1) by Winograd's minimal filtering F(2x2, 3x3): each 2x2 block
/// of outputs ("tile") comes from a 4x4 input patch with 16 multiplications per input/output channel pair
/// instead of 36, so the channel mixing is 16 GEMMs [tiles, Cin] x [Cin, Cout] — 2.25x fewer
/// multiply-adds than im2col. The weights are transformed once, at load (U = G g Gᵀ, 16 matrices
/// [Cout, Cin] in the GEMM's layout); inputs (V = Bᵀ d B) and outputs (Y = Aᵀ M A) are transformed per
/// strip of tiles, so the scratch stays a few MiB whatever the image. The transforms use only ±1 and ½,
/// so the result matches the direct convolution to float rounding (~1e-6 relative); the im2col path
/// stays as the oracle (ConvTests).
public struct Winograd3x3: Sendable {
    public let inChannels: Int, outChannels: Int
    /// U: [16][Cout][Cin].
    let transformed: [Float]

    /// Transforms OHWI weights [Cout, 3, 3, Cin].
    public init(ohwi weight: Tensor) {
        precondition(weight.rank == 4 && weight.shape[1] == 3 && weight.shape[2] == 3, "Winograd 3x3 needs OHWI 3x3 weights, got \(weight.shape)")
        let (cout, cin) = (weight.shape[0], weight.shape[3])
        inChannels = cin; outChannels = cout
        var u = [Float](repeating: 0, count: 16 * cout * cin)
        weight.data.withUnsafeBufferPointer { w in
            u.withUnsafeMutableBufferPointer { u in
                for o in 0..<cout {
                    for i in 0..<cin {
                        @inline(__always) func g(_ ky: Int, _ kx: Int) -> Float { w[((o * 3 + ky) * 3 + kx) * cin + i] }
                        // G g (4x3) with G = [[1,0,0],[½,½,½],[½,-½,½],[0,0,1]], then (G g) Gᵀ (4x4).
                        for r in 0..<4 {
                            var row = (Float(0), Float(0), Float(0))
                            for c in 0..<3 {
                                let value: Float
                                switch r {
                                case 0: value = g(0, c)
                                case 1: value = 0.5 * (g(0, c) + g(1, c) + g(2, c))
                                case 2: value = 0.5 * (g(0, c) - g(1, c) + g(2, c))
                                default: value = g(2, c)
                                }
                                if c == 0 { row.0 = value } else if c == 1 { row.1 = value } else { row.2 = value }
                            }
                            let at = { (c: Int) in ((r * 4 + c) * cout + o) * cin + i }
                            u[at(0)] = row.0
                            u[at(1)] = 0.5 * (row.0 + row.1 + row.2)
                            u[at(2)] = 0.5 * (row.0 - row.1 + row.2)
                            u[at(3)] = row.2
                        }
                    }
                }
            }
        }
        transformed = u
    }

    /// y = activation(conv3x3(x, padding 1) + bias) for NHWC `input` [n, h, w, Cin] into `output` [n, h, w, Cout].
    public func apply(batch n: Int, height h: Int, width w: Int, input: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                      activation: Activation, output: UnsafeMutablePointer<Float>) {
        let (cin, cout) = (inChannels, outChannels)
        let (tilesH, tilesW) = ((h + 1) / 2, (w + 1) / 2)
        let tiles = n * tilesH * tilesW
        guard tiles > 0 else { return }
        // Tiles per strip: ~8 MiB of transformed input, at least 32 rows for the GEMMs.
        let perStrip = max(32, (1 << 21) / max(1, 16 * cin))
        let strips = (tiles + perStrip - 1) / perStrip
        let box = UnsafeSendable((input, bias, output))
        transformed.withUnsafeBufferPointer { up in
            let u = UnsafeSendable(up.baseAddress!)
            Parallel.forEachChunk(strips) { range in
                let (input, bias, output) = box.value
                let v = UnsafeMutablePointer<Float>.allocate(capacity: 16 * perStrip * cin)
                let m = UnsafeMutablePointer<Float>.allocate(capacity: 16 * perStrip * cout)
                // Zeros for taps outside the image; scratch for outputs outside it; the bias (or zeros).
                let zeros = UnsafeMutablePointer<Float>.allocate(capacity: max(cin, cout))
                zeros.initialize(repeating: 0, count: max(cin, cout))
                let spill = UnsafeMutablePointer<Float>.allocate(capacity: cout)
                let patch = UnsafeMutablePointer<UnsafePointer<Float>>.allocate(capacity: 16)
                defer { v.deallocate(); m.deallocate(); zeros.deallocate(); spill.deallocate(); patch.deallocate() }
                let b = bias ?? UnsafePointer(zeros)
                for strip in range {
                    let first = strip * perStrip, count = min(perStrip, tiles - first)
                    // V = Bᵀ d B per tile, channels innermost.
                    for t in 0..<count {
                        let tile = first + t
                        let image = tile / (tilesH * tilesW), ty = (tile / tilesW) % tilesH, tx = tile % tilesW
                        for r in 0..<4 {
                            let y = 2 * ty - 1 + r
                            for c in 0..<4 {
                                let x = 2 * tx - 1 + c
                                patch[r * 4 + c] = y >= 0 && y < h && x >= 0 && x < w
                                    ? input + ((image * h + y) * w + x) * cin : UnsafePointer(zeros)
                            }
                        }
                        Self.inputTransform(patch, channels: cin, output: v + t * cin, stride: perStrip * cin)
                    }
                    // M[ξ] = V[ξ] U[ξ]ᵀ.
                    for xi in 0..<16 {
                        BLAS.gemm(m: count, n: cout, k: cin, a: v + xi * perStrip * cin, lda: cin, b: u.value + xi * cout * cin,
                                  ldb: cin, transposeB: true, c: m + xi * perStrip * cout, ldc: cout)
                    }
                    // Y = Aᵀ M A + bias, the in-image part of each 2x2 block, then the activation.
                    for t in 0..<count {
                        let tile = first + t
                        let image = tile / (tilesH * tilesW), ty = (tile / tilesW) % tilesH, tx = tile % tilesW
                        let y0 = 2 * ty, x0 = 2 * tx
                        let base = output + ((image * h + y0) * w + x0) * cout
                        let right = x0 + 1 < w, down = y0 + 1 < h
                        Self.outputTransform(m + t * cout, stride: perStrip * cout, channels: cout, bias: b, out00: base,
                                             out01: right ? base + cout : spill, out10: down ? base + w * cout : spill,
                                             out11: right && down ? base + (w + 1) * cout : spill)
                        activation.apply(base, count: cout)
                        if right { activation.apply(base + cout, count: cout) }
                        if down {
                            activation.apply(base + w * cout, count: cout)
                            if right { activation.apply(base + (w + 1) * cout, count: cout) }
                        }
                    }
                }
            }
        }
    }

    /// Bᵀ d B with Bᵀ = [[1,0,-1,0],[0,1,1,0],[0,-1,1,0],[0,1,0,-1]], for every channel of one tile
    /// (`d` holds the 16 patch pixels' channel pointers, row-major); component ξ goes to
    /// `output + ξ * stride`. Every access is contiguous in the channel, so the loop vectorises.
    @inline(__always)
    static func inputTransform(_ d: UnsafePointer<UnsafePointer<Float>>, channels: Int, output o: UnsafeMutablePointer<Float>,
                               stride s: Int) {
        let (d0, d1, d2, d3, d4, d5, d6, d7) = (d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7])
        let (d8, d9, d10, d11, d12, d13, d14, d15) = (d[8], d[9], d[10], d[11], d[12], d[13], d[14], d[15])
        for ch in 0..<channels {
            // Rows: t = Bᵀ d.
            let t00 = d0[ch] - d8[ch], t01 = d1[ch] - d9[ch], t02 = d2[ch] - d10[ch], t03 = d3[ch] - d11[ch]
            let t10 = d4[ch] + d8[ch], t11 = d5[ch] + d9[ch], t12 = d6[ch] + d10[ch], t13 = d7[ch] + d11[ch]
            let t20 = d8[ch] - d4[ch], t21 = d9[ch] - d5[ch], t22 = d10[ch] - d6[ch], t23 = d11[ch] - d7[ch]
            let t30 = d4[ch] - d12[ch], t31 = d5[ch] - d13[ch], t32 = d6[ch] - d14[ch], t33 = d7[ch] - d15[ch]
            // Columns: t B.
            o[ch] = t00 - t02; o[s + ch] = t01 + t02; o[2 * s + ch] = t02 - t01; o[3 * s + ch] = t01 - t03
            o[4 * s + ch] = t10 - t12; o[5 * s + ch] = t11 + t12; o[6 * s + ch] = t12 - t11; o[7 * s + ch] = t11 - t13
            o[8 * s + ch] = t20 - t22; o[9 * s + ch] = t21 + t22; o[10 * s + ch] = t22 - t21; o[11 * s + ch] = t21 - t23
            o[12 * s + ch] = t30 - t32; o[13 * s + ch] = t31 + t32; o[14 * s + ch] = t32 - t31; o[15 * s + ch] = t31 - t33
        }
    }

    /// Aᵀ M A with Aᵀ = [[1,1,1,0],[0,1,-1,-1]] plus the bias, to the four outputs of a tile (those
    /// outside the image point at scratch).
    @inline(__always)
    static func outputTransform(_ m: UnsafeMutablePointer<Float>, stride s: Int, channels: Int, bias: UnsafePointer<Float>,
                                out00: UnsafeMutablePointer<Float>, out01: UnsafeMutablePointer<Float>,
                                out10: UnsafeMutablePointer<Float>, out11: UnsafeMutablePointer<Float>) {
        for ch in 0..<channels {
            let s00 = m[ch] + m[4 * s + ch] + m[8 * s + ch], s01 = m[s + ch] + m[5 * s + ch] + m[9 * s + ch]
            let s02 = m[2 * s + ch] + m[6 * s + ch] + m[10 * s + ch], s03 = m[3 * s + ch] + m[7 * s + ch] + m[11 * s + ch]
            let s10 = m[4 * s + ch] - m[8 * s + ch] - m[12 * s + ch], s11 = m[5 * s + ch] - m[9 * s + ch] - m[13 * s + ch]
            let s12 = m[6 * s + ch] - m[10 * s + ch] - m[14 * s + ch], s13 = m[7 * s + ch] - m[11 * s + ch] - m[15 * s + ch]
            let b = bias[ch]
            out00[ch] = s00 + s01 + s02 + b
            out01[ch] = s01 - s02 - s03 + b
            out10[ch] = s10 + s11 + s12 + b
            out11[ch] = s11 - s12 - s13 + b
        }
    }
}
