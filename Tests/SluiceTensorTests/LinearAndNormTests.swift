import XCTest
import SluiceTensor

/// Linear (F.linear), LayerNorm, RMSNorm and softmax against PyTorch.
final class LinearAndNormTests: XCTestCase {
    func checkLinear(_ name: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let params = try Fixtures.parameters(name)
        let bias = params.flag("bias") ? try Fixtures.tensor(name + "_b") : nil
        let layer = Linear(weight: try Fixtures.tensor(name + "_w"), bias: bias)
        let y = layer(try Fixtures.tensor(name + "_x"), activation: try params.activation())
        assertParity(y, try Fixtures.tensor(name + "_y"), name, file: file, line: line)
    }

    func testLinear2DWithBias() throws { try checkLinear("linear_2d_bias") }
    func testLinear2DWithoutBias() throws { try checkLinear("linear_2d_nobias") }
    func testLinear3DWithBias() throws { try checkLinear("linear_3d_bias") }
    func testLinear3DWithoutBias() throws { try checkLinear("linear_3d_nobias") }
    func testLinear3DFusedGELU() throws { try checkLinear("linear_3d_bias_gelu") }

    func checkLayerNorm(_ name: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let params = try Fixtures.parameters(name)
        let affine = params.flag("affine")
        let norm = LayerNorm(weight: affine ? try Fixtures.tensor(name + "_w") : nil,
                             bias: affine ? try Fixtures.tensor(name + "_b") : nil, eps: try params.float("eps"))
        let y = norm(try Fixtures.tensor(name + "_x").nchwToNHWC()).nhwcToNCHW()
        assertParity(y, try Fixtures.tensor(name + "_y"), name, file: file, line: line)
    }

    func testLayerNormChannelsEps1e6() throws { try checkLayerNorm("layernorm_eps1e-6") }
    func testLayerNormChannelsEps1e5() throws { try checkLayerNorm("layernorm_eps1e-5") }
    func testLayerNormWithoutAffine() throws { try checkLayerNorm("layernorm_noaffine") }

    func checkRMSNorm(_ name: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let params = try Fixtures.parameters(name)
        let norm = RMSNorm(weight: params.flag("affine") ? try Fixtures.tensor(name + "_w") : nil,
                           eps: try params.float("eps"))
        let y = norm(try Fixtures.tensor(name + "_x"))
        assertParity(y, try Fixtures.tensor(name + "_y"), name, file: file, line: line)
    }

    func testRMSNorm() throws { try checkRMSNorm("rmsnorm") }
    func testRMSNormWithoutWeight() throws { try checkRMSNorm("rmsnorm_noweight") }

    func testSoftmaxLastAxisLargeLogits() throws {
        let x = try Fixtures.tensor("softmax_x")
        let y = Softmax.lastAxis(x)
        let expected = try Fixtures.tensor("softmax_y")
        assertParity(y, expected, "softmax")
        // Each row sums to one and nothing overflowed for the +1000 / -1e4 rows.
        let n = x.shape.last!
        for row in 0..<(y.count / n) {
            let sum = y.data[(row * n)..<((row + 1) * n)].reduce(0, +)
            XCTAssertEqual(sum, 1, accuracy: 1e-5, "softmax row \(row) sums to \(sum)")
        }
        XCTAssertFalse(y.data.contains { !$0.isFinite }, "softmax produced non-finite values")
    }
}
