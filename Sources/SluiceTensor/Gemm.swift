import COpenBLAS

/// Every matrix product in Sluice goes through OpenBLAS: `cblas_sgemm` (row-major), or `cblas_sgemv`
/// for a product with a single row.
public enum BLAS {
    /// C[M,N] = alpha * A[M,K] * op(B) + beta * C, where op(B) is B[K,N], or B[N,K] transposed
    /// when `transposeB` (the layout of PyTorch linear and 1x1-conv weights).
    @inline(__always)
    public static func gemm(m: Int, n: Int, k: Int,
                            a: UnsafePointer<Float>, lda: Int,
                            b: UnsafePointer<Float>, ldb: Int, transposeB: Bool,
                            c: UnsafeMutablePointer<Float>, ldc: Int,
                            alpha: Float = 1, beta: Float = 0) {
        guard m > 0, n > 0 else { return }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans,
                    Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }
}

/// What a tiled GEMM does to each tile of C right after computing it, while the tile is in cache.
public enum GemmEpilogue: @unchecked Sendable {
    case none
    /// C = activation(C + bias); a nil bias adds nothing.
    case bias(UnsafePointer<Float>?, activation: Activation = .identity)
    /// C = (C + bias) ⊙ gate, the gate with its own row stride (HorNet's recursive gating).
    case biasGate(bias: UnsafePointer<Float>, gate: UnsafePointer<Float>, gateStride: Int)

    var biasPointer: UnsafePointer<Float>? {
        switch self {
        case .none: return nil
        case .bias(let p, _): return p
        case .biasGate(let p, _, _): return p
        }
    }
}

extension BLAS {
    /// C = A · Bᵀ (B is [n, k], PyTorch's weight layout), or C += A · Bᵀ when `accumulate`, split into
    /// tiles of rows (or of columns when there are few rows) over `Parallel.threads`, each tile finished
    /// by `epilogue` right after its product. OpenBLAS runs single-threaded inside each tile
    /// (`Parallel.configure`); the split does not change any value (each element of C is one dot
    /// product in OpenBLAS's order whichever tile computes it, up to its own kernel choice).
    public static func gemm(m: Int, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int,
                            b: UnsafePointer<Float>, ldb: Int, c: UnsafeMutablePointer<Float>, ldc: Int,
                            accumulate: Bool = false, epilogue: GemmEpilogue = .none, minimumTileRows: Int = 256) {
        guard m > 0, n > 0 else { return }
        let threads = Parallel.threads
        // OpenBLAS packs the weights again for every call, so tiles are large (~1 MiB of C; 256 KiB
        // tiles, which fit this Zen 3's 512 KiB L2, measured no faster on Lite0's early layers);
        // without an epilogue one thread takes all rows in one call. A caller whose epilogue is cheap
        // next to re-packing wide weights asks for taller tiles (`minimumTileRows`).
        let rowsForCache = max(minimumTileRows, (262144 / n) & ~15)
        let box = UnsafeSendable((a, b, c, epilogue.biasPointer))
        // Starting C at the bias and accumulating (beta = 1) replaces OpenBLAS's own beta = 0 pass
        // (measured 7% of EfficientNet-Lite0) and the bias pass with one write.
        @Sendable func product(rows: Int, row0: Int, columns: Int, column0: Int) {
            let (a, b, c, bias) = box.value
            let cTile = c + row0 * ldc + column0
            if let bias {
                for row in 0..<rows {
                    let r = cTile + row * ldc
                    for j in 0..<columns { r[j] = bias[column0 + j] }
                }
            }
            let beta: Float = accumulate || bias != nil ? 1 : 0
            if rows == 1 {
                // One row (a classifier head at batch 1): OpenBLAS's sgemm would copy all of B into its
                // packed layout to use it once; sgemv reads B once (Lite0's 1000x1280 head: 0.12 against
                // 0.63 ms, scripts/bench/layers).
                cblas_sgemv(CblasRowMajor, CblasNoTrans, Int32(columns), Int32(k), 1, b + column0 * ldb, Int32(ldb),
                            a + row0 * lda, 1, beta, cTile, 1)
            } else {
                gemm(m: rows, n: columns, k: k, a: a + row0 * lda, lda: lda, b: b + column0 * ldb, ldb: ldb,
                     transposeB: true, c: cTile, ldc: ldc, beta: beta)
            }
            switch epilogue {
            case .none: return
            case .bias(_, let activation):
                guard activation != .identity else { return }
                for row in 0..<rows { activation.apply(cTile + row * ldc, count: columns) }
            case .biasGate(_, let gate, let gateStride):
                for row in 0..<rows {
                    let r = cTile + row * ldc, gr = gate + (row0 + row) * gateStride + column0
                    for j in 0..<columns { r[j] *= gr[j] }
                }
            }
        }
        // Rows split while there are more of them than outputs: each tile then packs all of B once. With
        // fewer rows than outputs (a transformer's few hundred tokens against a 1536-wide weight), split
        // the outputs instead, so each thread packs only its share of B (TRecViT-B at 2 threads: 651 → ~540 ms a frame).
        if threads == 1 || m >= 2 * rowsForCache || (m >= 32 * threads && m >= n) || n < 64 * threads {
            // A multiple of `threads` tiles of equal size, so no thread idles while another finishes
            // an extra tile (5 tiles on 2 threads would leave one thread idle for a fifth of the time).
            var tileCount = (m + rowsForCache - 1) / rowsForCache
            tileCount = (tileCount + threads - 1) / threads * threads
            var rowsPerTile = max(16, (m + tileCount - 1) / tileCount)
            if threads == 1, case .none = epilogue { rowsPerTile = m }
            let tileRows = rowsPerTile
            let tiles = (m + tileRows - 1) / tileRows
            Parallel.forEachChunk(tiles) { range in
                for tile in range {
                    let row0 = tile * tileRows
                    product(rows: min(tileRows, m - row0), row0: row0, columns: n, column0: 0)
                }
            }
        } else {
            // Few rows, many outputs (a classifier head, a short token sequence): split the columns.
            let tileColumns = ((n + threads - 1) / threads + 15) & ~15
            let tiles = (n + tileColumns - 1) / tileColumns
            Parallel.forEachChunk(tiles) { range in
                for tile in range {
                    let column0 = tile * tileColumns
                    product(rows: m, row0: 0, columns: min(tileColumns, n - column0), column0: column0)
                }
            }
        }
    }
}

/// A fully connected layer: y = x W^T + b, with W stored as PyTorch does ([out, in]).
public struct Linear: Sendable {
    public var weight: Tensor   // [out, in]
    public var bias: Tensor?    // [out]
    /// The shortest row tile `BLAS.gemm` may use (taller tiles re-pack the weights less often).
    public var minimumTileRows = 256
    public init(weight: Tensor, bias: Tensor?) {
        precondition(weight.rank == 2, "linear weight must be [out, in], got \(weight.shape)")
        if let bias { precondition(bias.shape == [weight.shape[0]], "bias \(bias.shape) does not fit \(weight.shape)") }
        self.weight = weight
        self.bias = bias
    }
    public var inFeatures: Int { weight.shape[1] }
    public var outFeatures: Int { weight.shape[0] }

    /// Applies the layer to the last axis of `x` and then `activation`.
    public func callAsFunction(_ x: Tensor, activation: Activation = .identity) -> Tensor {
        precondition(x.shape.last == inFeatures, "linear expects last dim \(inFeatures), got \(x.shape)")
        let rows = x.count / inFeatures
        var outShape = x.shape
        outShape[outShape.count - 1] = outFeatures
        return Tensor(uninitialized: outShape) { out in
            x.data.withUnsafeBufferPointer { xp in
                weight.data.withUnsafeBufferPointer { wp in
                    withOptionalPointer(bias?.data) { bp in
                        BLAS.gemm(m: rows, n: outFeatures, k: inFeatures, a: xp.baseAddress!, lda: inFeatures,
                                  b: wp.baseAddress!, ldb: inFeatures, c: out.baseAddress!, ldc: outFeatures,
                                  epilogue: .bias(bp, activation: activation), minimumTileRows: minimumTileRows)
                    }
                }
            }
        }
    }
}

/// Calls `body` with a pointer to `values`' storage, or nil when there are none.
@inline(__always)
func withOptionalPointer<R>(_ values: [Float]?, _ body: (UnsafePointer<Float>?) throws -> R) rethrows -> R {
    guard let values else { return try body(nil) }
    return try values.withUnsafeBufferPointer { try body($0.baseAddress!) }
}
