import XCTest
import SluiceTensor

/// Winograd F(2x2, 3x3) against the im2col convolution (the oracle) and against PyTorch's fixture.
final class WinogradTests: XCTestCase {
    func testWinogradMatchesIm2colOnOddSizesBatchesAndChannelCounts() {
        var random = SplitMix64(seed: 3)
        for (n, h, w, cin, cout) in [(1, 7, 9, 16, 24), (2, 16, 16, 64, 32), (1, 1, 1, 8, 8), (1, 2, 3, 5, 7),
                                     (1, 33, 20, 40, 48), (3, 5, 4, 130, 3)] {
            let weight = Tensor(shape: [cout, cin, 3, 3], data: (0..<(cout * cin * 9)).map { _ in Float.random(in: -1...1, using: &random) })
            let bias = Tensor(shape: [cout], data: (0..<cout).map { _ in Float.random(in: -1...1, using: &random) })
            let x = Tensor(shape: [n, h, w, cin], data: (0..<(n * h * w * cin)).map { _ in Float.random(in: -1...1, using: &random) })
            let direct = Conv2d(torchWeight: weight, bias: bias, padding: .symmetric(1))
            let fast = direct.usingWinograd()
            XCTAssertNotNil(fast.winograd)
            for threads in [1, 2] {
                Parallel.configure(threads: threads)
                for activation in [Activation.identity, .relu] {
                    let expected = direct(x, activation: activation), actual = fast(x, activation: activation)
                    XCTAssertEqual(actual.shape, expected.shape)
                    let error = Tensor.maxRelativeError(actual, expected)
                    XCTAssertLessThanOrEqual(error, 1e-5, "\(n)x\(h)x\(w)x\(cin)->\(cout) \(activation): \(error)")
                }
            }
        }
        Parallel.configure(threads: nil)
    }

    func testOnlyDenseStride1Padding1ConvolutionsUseIt() {
        let w = Tensor(zeros: [4, 4, 3, 3])
        XCTAssertNil(Conv2d(torchWeight: w, bias: nil, stride: (2, 2), padding: .symmetric(1)).usingWinograd().winograd)
        XCTAssertNil(Conv2d(torchWeight: w, bias: nil, padding: .zero).usingWinograd().winograd)
        XCTAssertNil(Conv2d(torchWeight: Tensor(zeros: [4, 2, 3, 3]), bias: nil, padding: .symmetric(1), groups: 2).usingWinograd().winograd)
        XCTAssertNil(Conv2d(torchWeight: Tensor(zeros: [4, 4, 1, 1]), bias: nil).usingWinograd().winograd)
        XCTAssertNotNil(Conv2d(torchWeight: w, bias: nil, padding: .symmetric(1)).usingWinograd().winograd)
    }

    /// Folding a BatchNorm into a Winograd convolution re-transforms the folded weights.
    func testFoldingKeepsWinogradInStep() {
        var random = SplitMix64(seed: 5)
        let weight = Tensor(shape: [6, 5, 3, 3], data: (0..<270).map { _ in Float.random(in: -1...1, using: &random) })
        let norm = BatchNorm(weight: Tensor(shape: [6], data: [0.5, 1, 1.5, 2, 0.7, 1.1]), bias: Tensor(shape: [6], data: [0.1, -0.2, 0.3, 0, 0.5, -1]),
                             runningMean: Tensor(shape: [6], data: [0, 0.1, -0.1, 0.2, 0, 1]),
                             runningVar: Tensor(shape: [6], data: [1, 0.5, 2, 1.5, 0.1, 3]), eps: 1e-5)
        let x = Tensor(shape: [1, 6, 7, 5], data: (0..<210).map { _ in Float.random(in: -1...1, using: &random) })
        let conv = Conv2d(torchWeight: weight, bias: nil, padding: .symmetric(1))
        let expected = conv.folding(norm)(x), actual = conv.usingWinograd().folding(norm)(x)
        XCTAssertLessThanOrEqual(Tensor.maxRelativeError(actual, expected), 1e-5)
    }
}
