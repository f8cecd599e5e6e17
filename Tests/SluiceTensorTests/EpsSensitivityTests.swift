import XCTest
import SluiceTensor

/// Norm kernels on inputs whose variance is comparable to eps, against a float64 oracle, so a wrong
/// eps (1e-5 for 1e-6, or 0 for BatchNorm) fails by far more than the 1e-4 bound. The torch fixtures
/// in LinearAndNormTests use unit-variance inputs, where eps barely shows.
final class EpsSensitivityTests: XCTestCase {
    /// Rows with variance ~3e-7 (values mean ± 1e-3): 1e-6 against 1e-5 changes the output ~2.4x.
    func testLayerNormHonoursEps1e6OnSmallVarianceRows() {
        var random = SplitMix64(seed: 21)
        let (rows, channels) = (64, 48)
        let values = (0..<(rows * channels)).map { i in Float(i / channels) * 1e-3 + Float.random(in: -1e-3...1e-3, using: &random) }
        let weight = (0..<channels).map { _ in Float.random(in: 0.5...1.5, using: &random) }
        let bias = (0..<channels).map { _ in Float.random(in: -0.2...0.2, using: &random) }
        func oracle(eps: Double) -> Tensor {
            var out = [Float](repeating: 0, count: values.count)
            for r in 0..<rows {
                let row = values[(r * channels)..<((r + 1) * channels)].map(Double.init)
                let mean = row.reduce(0, +) / Double(channels)
                let variance = row.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(channels)
                for c in 0..<channels {
                    out[r * channels + c] = Float((row[c] - mean) / (variance + eps).squareRoot() * Double(weight[c]) + Double(bias[c]))
                }
            }
            return Tensor(shape: [rows, channels], data: out)
        }
        let x = Tensor(shape: [rows, channels], data: values)
        let y = LayerNorm(weight: Tensor(shape: [channels], data: weight), bias: Tensor(shape: [channels], data: bias), eps: 1e-6)(x)
        let error = Tensor.maxRelativeError(y, oracle(eps: 1e-6))
        let wrongEps = Tensor.maxRelativeError(y, oracle(eps: 1e-5))
        print("LayerNorm eps 1e-6 on small-variance rows: max relative error \(error); against eps 1e-5: \(wrongEps)")
        // Measured 1.1e-5 (float32 rounding of values near r·1e-3); eps 1e-5 instead would be off by 1.37.
        XCTAssertLessThanOrEqual(error, 1e-4)
        XCTAssertGreaterThan(wrongEps, 0.1, "the test must tell eps 1e-6 from 1e-5")
    }

    /// Running variances of 1e-6..1e-5: folding with eps 1e-5 against eps 0 changes outputs by up to ~3x.
    func testFoldedBatchNormHonoursEpsWithTinyRunningVariance() {
        var random = SplitMix64(seed: 22)
        let (cin, cout, h, w) = (3, 4, 5, 6)
        let weight = Tensor(shape: [cout, cin, 3, 3], data: (0..<(cout * cin * 9)).map { _ in Float.random(in: -1...1, using: &random) })
        let variance: [Float] = [1e-6, 2e-6, 5e-6, 1e-5]
        let norm = BatchNorm(weight: Tensor(shape: [cout], data: [1, 0.5, 2, 1.5]), bias: Tensor(shape: [cout], data: [0.1, 0, -0.1, 0.2]),
                             runningMean: Tensor(shape: [cout], data: [0.01, -0.02, 0, 0.03]),
                             runningVar: Tensor(shape: [cout], data: variance), eps: 1e-5)
        let x = Tensor(shape: [1, h, w, cin], data: (0..<(h * w * cin)).map { _ in Float.random(in: -1e-3...1e-3, using: &random) })
        let conv = Conv2d(torchWeight: weight, bias: nil, padding: .symmetric(1))
        let raw = conv(x)
        func oracle(eps: Double) -> Tensor {
            var out = raw
            for i in 0..<out.count {
                let c = i % cout
                let scale = Double(norm.weight.data[c]) / (Double(variance[c]) + eps).squareRoot()
                out.data[i] = Float((Double(raw.data[i]) - Double(norm.runningMean.data[c])) * scale + Double(norm.bias.data[c]))
            }
            return out
        }
        let folded = conv.folding(norm)(x)
        let error = Tensor.maxRelativeError(folded, oracle(eps: 1e-5))
        let wrongEps = Tensor.maxRelativeError(folded, oracle(eps: 0))
        print("folded BatchNorm eps 1e-5, running var 1e-6..1e-5: max relative error \(error); against eps 0: \(wrongEps)")
        XCTAssertLessThanOrEqual(error, 1e-4)
        XCTAssertGreaterThan(wrongEps, 0.1, "the test must tell eps 1e-5 from 0")
    }
}
