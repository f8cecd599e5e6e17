import Foundation

/// Gated Linear Attention (Yang et al. 2023) scans, as fla's `naive_recurrent_gla` defines them.
///
/// Per head the state S is d_k × d_v (float32). Forward direction, t = 0 … T−1:
///     S_t = diag(exp g_t) · S_{t−1} + k_t v_tᵀ        (decay applied before adding the current token)
///     o_t = S_tᵀ (q_t · scale)
/// Backward direction, t = T−1 … 0, with its own gates gb_t (the gate of the token being absorbed):
///     S_t = diag(exp gb_t) · S_{t+1} + k_t v_tᵀ,   o_t = S_tᵀ (q_t · scale)
/// Both directions include the current token.
public enum GLA {
    /// Strided view of per-token rows: element (b, t, h, i) is at base[(b·tokens + t)·rowStride + h·headStride + i].
    public struct Rows: @unchecked Sendable {
        public var base: UnsafePointer<Float>
        public var rowStride: Int
        public var headStride: Int
        public init(_ base: UnsafePointer<Float>, rowStride: Int, headStride: Int) {
            self.base = base; self.rowStride = rowStride; self.headStride = headStride
        }
    }

    /// The bidirectional scan, step by step in float32:
    /// output[(b·T + t), h·dv + j] = outputScale · (o^fwd_t + o^bwd_t)[j].
    ///
    /// - q, k: d_k per head; v: d_v per head; forwardGates, backwardGates: log decays (≤ 0), d_k per head.
    /// - output: [batch·tokens, heads·dv] contiguous.
    /// Parallel over (batch, head).
    public static func bidirectionalRecurrent(batch: Int, tokens: Int, heads: Int, dk: Int, dv: Int,
                                              q: Rows, k: Rows, v: Rows, forwardGates: Rows, backwardGates: Rows,
                                              scale: Float, outputScale: Float,
                                              output: UnsafeMutablePointer<Float>) {
        let out = UnsafeSendable(output)
        let outStride = heads * dv
        Parallel.forEachChunk(batch * heads) { range in
            let state = UnsafeMutablePointer<Float>.allocate(capacity: dk * dv)
            let decay = UnsafeMutablePointer<Float>.allocate(capacity: dk)
            let scaledQ = UnsafeMutablePointer<Float>.allocate(capacity: dk)
            let acc = UnsafeMutablePointer<Float>.allocate(capacity: dv)
            defer { state.deallocate(); decay.deallocate(); scaledQ.deallocate(); acc.deallocate() }
            for index in range {
                let b = index / heads, h = index % heads
                for reverse in [false, true] {
                    let gates = reverse ? backwardGates : forwardGates
                    state.initialize(repeating: 0, count: dk * dv)
                    for step in 0..<tokens {
                        let t = reverse ? tokens - 1 - step : step
                        let row = b * tokens + t
                        let qp = q.base + row * q.rowStride + h * q.headStride
                        let kp = k.base + row * k.rowStride + h * k.headStride
                        let vp = v.base + row * v.rowStride + h * v.headStride
                        let gp = gates.base + row * gates.rowStride + h * gates.headStride
                        for i in 0..<dk { decay[i] = Foundation.exp(gp[i]); scaledQ[i] = qp[i] * scale }
                        for j in 0..<dv { acc[j] = 0 }
                        for i in 0..<dk {
                            let s = state + i * dv
                            let a = decay[i], ki = kp[i], qi = scaledQ[i]
                            for j in 0..<dv {
                                let updated = s[j] * a + ki * vp[j]
                                s[j] = updated
                                acc[j] += updated * qi
                            }
                        }
                        let op = out.value + row * outStride + h * dv
                        if reverse {
                            for j in 0..<dv { op[j] = (op[j] + acc[j]) * outputScale }
                        } else {
                            for j in 0..<dv { op[j] = acc[j] }
                        }
                    }
                }
            }
        }
    }
}

extension GLA {
    /// Tokens per chunk of the chunked scan.
    public static let chunkLength = 64
    /// A chunk runs in factorised (GEMM) form only while every cumulative log decay inside it stays
    /// within ±`factorisedSpan`, so exp(±B) neither overflows nor underflows; otherwise it runs step by step.
    static let factorisedSpan: Float = 60

    /// The same bidirectional scan as `bidirectionalRecurrent`, chunked: within a chunk of L tokens, with
    /// B_t the cumulative log decay since the chunk start (so the carried state needs no rescaling beyond
    /// diag(exp B)),
    ///     o_t = (q_t ⊙ e^{B_t})ᵀ S_prev · scale + Σ_{u≤t} [(q_t ⊙ e^{B_t}) · (k_u ⊙ e^{−B_u})] v_u · scale
    ///     S_next = diag(e^{B_last}) S_prev + Σ_u (k_u ⊙ e^{B_last − B_u}) v_uᵀ
    /// as GEMMs (OpenBLAS, single-threaded inside the parallel loop). The backward direction runs the same
    /// code over the tokens in reverse order. Work is split over (batch, head, direction), so a model with
    /// three heads still keeps two threads busy; the backward outputs go to a scratch buffer and are summed
    /// in at the end.
    public static func bidirectionalChunked(batch: Int, tokens: Int, heads: Int, dk: Int, dv: Int,
                                            q: Rows, k: Rows, v: Rows, forwardGates: Rows, backwardGates: Rows,
                                            scale: Float, outputScale: Float,
                                            output: UnsafeMutablePointer<Float>) {
        let outStride = heads * dv, rows = batch * tokens
        let backward = UnsafeMutablePointer<Float>.allocate(capacity: rows * outStride)
        defer { backward.deallocate() }
        let forwardOut = UnsafeSendable(output), backwardOut = UnsafeSendable(backward)
        let chunk = chunkLength
        Parallel.forEachChunk(batch * heads * 2) { range in
            let state = UnsafeMutablePointer<Float>.allocate(capacity: dk * dv)
            let qs = UnsafeMutablePointer<Float>.allocate(capacity: chunk * dk)    // q_t ⊙ e^{B_t} · scale
            let ks = UnsafeMutablePointer<Float>.allocate(capacity: chunk * dk)    // k_u ⊙ e^{−B_u}
            let klT = UnsafeMutablePointer<Float>.allocate(capacity: dk * chunk)   // (k_u ⊙ e^{B_last − B_u})ᵀ
            let cum = UnsafeMutablePointer<Float>.allocate(capacity: chunk * dk)   // B_t
            let vs = UnsafeMutablePointer<Float>.allocate(capacity: chunk * dv)
            let scores = UnsafeMutablePointer<Float>.allocate(capacity: chunk * chunk)
            let o = UnsafeMutablePointer<Float>.allocate(capacity: chunk * dv)
            defer { for p in [state, qs, ks, klT, cum, vs, scores, o] { p.deallocate() } }
            for index in range {
                let b = index / 2 / heads, h = index / 2 % heads, reverse = index % 2 == 1
                let gates = reverse ? backwardGates : forwardGates
                let out = reverse ? backwardOut.value : forwardOut.value
                state.initialize(repeating: 0, count: dk * dv)
                var start = 0
                while start < tokens {
                    let length = min(chunk, tokens - start)
                    // Row of the j-th token of this chunk in processing order.
                    func row(_ j: Int) -> Int { b * tokens + (reverse ? tokens - 1 - (start + j) : start + j) }
                    var span: Float = 0
                    for j in 0..<length {
                        let gp = gates.base + row(j) * gates.rowStride + h * gates.headStride
                        let c = cum + j * dk
                        for i in 0..<dk {
                            c[i] = (j == 0 ? 0 : cum[(j - 1) * dk + i]) + gp[i]
                            span = max(span, abs(c[i]))
                        }
                        let vp = v.base + row(j) * v.rowStride + h * v.headStride
                        for jj in 0..<dv { vs[j * dv + jj] = vp[jj] }
                    }
                    if span <= factorisedSpan {
                        let last = cum + (length - 1) * dk
                        for j in 0..<length {
                            let qp = q.base + row(j) * q.rowStride + h * q.headStride
                            let kp = k.base + row(j) * k.rowStride + h * k.headStride
                            let c = cum + j * dk
                            // FastMath.exp (relative error < 2e-7, vectorised); |B| ≤ 60 here.
                            for i in 0..<dk {
                                qs[j * dk + i] = qp[i] * FastMath.exp(c[i]) * scale
                                ks[j * dk + i] = kp[i] * FastMath.exp(-c[i])
                                klT[i * length + j] = kp[i] * FastMath.exp(last[i] - c[i])
                            }
                        }
                        // Intra-chunk scores, causal in processing order.
                        BLAS.gemm(m: length, n: length, k: dk, a: qs, lda: dk, b: ks, ldb: dk, transposeB: true,
                                  c: scores, ldc: length)
                        for t in 0..<length { for u in (t + 1)..<max(t + 1, length) { scores[t * length + u] = 0 } }
                        BLAS.gemm(m: length, n: dv, k: length, a: scores, lda: length, b: vs, ldb: dv,
                                  transposeB: false, c: o, ldc: dv)
                        // Carried state.
                        BLAS.gemm(m: length, n: dv, k: dk, a: qs, lda: dk, b: state, ldb: dv, transposeB: false,
                                  c: o, ldc: dv, beta: 1)
                        for i in 0..<dk {
                            let d = Foundation.exp(last[i])
                            let s = state + i * dv
                            for jj in 0..<dv { s[jj] *= d }
                        }
                        BLAS.gemm(m: dk, n: dv, k: length, a: klT, lda: length, b: vs, ldb: dv, transposeB: false,
                                  c: state, ldc: dv, beta: 1)
                    } else {
                        // Decays too steep for the factorised form: exact steps on the carried state.
                        for j in 0..<length {
                            let qp = q.base + row(j) * q.rowStride + h * q.headStride
                            let kp = k.base + row(j) * k.rowStride + h * k.headStride
                            let gp = gates.base + row(j) * gates.rowStride + h * gates.headStride
                            let oj = o + j * dv, vp = vs + j * dv
                            for jj in 0..<dv { oj[jj] = 0 }
                            for i in 0..<dk {
                                let s = state + i * dv
                                let a = Foundation.exp(gp[i]), ki = kp[i], qi = qp[i] * scale
                                for jj in 0..<dv {
                                    let updated = s[jj] * a + ki * vp[jj]
                                    s[jj] = updated
                                    oj[jj] += updated * qi
                                }
                            }
                        }
                    }
                    for j in 0..<length {
                        (out + row(j) * outStride + h * dv).update(from: o + j * dv, count: dv)
                    }
                    start += length
                }
            }
        }
        // output = outputScale · (o_fwd + o_bwd)
        Parallel.forEachChunk(rows, minChunk: 256) { range in
            for r in range {
                let f = forwardOut.value + r * outStride, bwd = backwardOut.value + r * outStride
                for j in 0..<outStride { f[j] = (f[j] + bwd[j]) * outputScale }
            }
        }
    }
}

extension GLA {
    /// In place, z → logsigmoid(z) / normalizer: the log decays fla's GLA takes from its gate projection
    /// (ViG: normalizer 16). logsigmoid(z) = min(z, 0) − log1p(e^{−|z|}) with e^{−|z|} ∈ (0, 1], computed
    /// branch-free (FastMath.exp, `log1pUnit`) so it vectorises; parallel over the elements.
    public static func logSigmoidGates(_ z: UnsafeMutablePointer<Float>, count: Int, normalizer: Float) {
        let box = UnsafeSendable(z)
        Parallel.forEachChunk(count, minChunk: 16384) { range in
            let g = box.value
            for i in range {
                let v = g[i]
                g[i] = (min(v, 0) - log1pUnit(FastMath.exp(-abs(v)))) / normalizer
            }
        }
    }

    /// log(1 + y) for y in [0, 1], as 2·atanh(s) with s = y / (2 + y) ∈ [0, 1/3]: the odd series of atanh
    /// up to s¹⁵, whose remainder is below 2e-9 relative.
    @inline(__always)
    static func log1pUnit(_ y: Float) -> Float {
        let s = y / (2 + y), s2 = s * s
        var p: Float = 1.0 / 15
        p = p * s2 + 1.0 / 13
        p = p * s2 + 1.0 / 11
        p = p * s2 + 1.0 / 9
        p = p * s2 + 1.0 / 7
        p = p * s2 + 1.0 / 5
        p = p * s2 + 1.0 / 3
        p = p * s2 + 1
        return 2 * s * p
    }
}
