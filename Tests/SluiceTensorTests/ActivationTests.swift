import XCTest
import SluiceTensor

/// The activations (FastMath exp/sigmoid/tanh, erf GELU) against PyTorch over [-12, 12], random values and
/// large magnitudes. Besides the relative parity bound, every element is held to an absolute bound so that
/// an error in the small outputs (which a relative-to-max measure would hide) still fails.
final class ActivationTests: XCTestCase {
    func check(_ activation: Activation, file: StaticString = #filePath, line: UInt = #line) throws {
        let x = try Fixtures.tensor("activation_x")
        let expected = try Fixtures.tensor("activation_\(activation.rawValue)")
        var y = x
        activation.apply(&y)
        assertParity(y, expected, "activation \(activation.rawValue)", file: file, line: line)
        var worstExcess: (excess: Float, index: Int) = (-.infinity, 0)
        var maxAbsolute: (error: Float, index: Int) = (0, 0)
        for i in 0..<x.count {
            let error = abs(y.data[i] - expected.data[i])
            let excess = error.isNaN ? Float.infinity : error - (2e-6 + 1e-6 * abs(x.data[i]))
            if excess > worstExcess.excess { worstExcess = (excess, i) }
            if !(error <= maxAbsolute.error) { maxAbsolute = (error.isNaN ? .infinity : error, i) }
        }
        print("[parity] activation \(activation.rawValue): max absolute error \(maxAbsolute.error) "
              + "at x = \(x.data[maxAbsolute.index])")
        let i = worstExcess.index
        XCTAssertLessThanOrEqual(worstExcess.excess, 0,
                                 "\(activation.rawValue)(\(x.data[i])) = \(y.data[i]), expected \(expected.data[i]) "
                                 + "(abs error \(abs(y.data[i] - expected.data[i])) > 2e-6 + 1e-6|x|)",
                                 file: file, line: line)
    }

    func testReLU() throws { try check(.relu) }
    func testReLU6() throws { try check(.relu6) }
    func testSiLU() throws { try check(.silu) }
    func testSigmoid() throws { try check(.sigmoid) }
    func testGELUExact() throws { try check(.gelu) }
    func testGELUTanh() throws { try check(.geluTanh) }

    func testEveryActivationHasAFixture() throws {
        let names = try Fixtures.parameters("activation")["names"] as? [String] ?? []
        XCTAssertEqual(Set(names), Set(Activation.allCases.filter { $0 != .identity }.map(\.rawValue)))
    }

    /// FastMath.exp on its own, against libm over the whole float range it claims (relative error).
    func testFastExpRelativeError() {
        var worst: Float = 0, at: Float = 0
        var v: Float = -87
        while v <= 88 {
            let reference = Foundation.exp(Double(v))
            let error = Float(abs(Double(FastMath.exp(v)) - reference) / reference)
            if error > worst { worst = error; at = v }
            v += 0.0137
        }
        print("[parity] FastMath.exp: max relative error \(worst) at \(at)")
        XCTAssertLessThan(worst, 2e-7, "FastMath.exp relative error \(worst) at \(at)")
        XCTAssertEqual(FastMath.exp(0), 1)
        XCTAssertEqual(FastMath.tanh(-200), -1)
        XCTAssertEqual(FastMath.tanh(200), 1)
        XCTAssertEqual(FastMath.sigmoid(200), 1)
    }

    /// The eight-lane exp is the scalar one lane by lane, bit for bit, clamps included.
    func testEightLaneExpEqualsTheScalarOne() {
        var generator = SplitMix64(seed: 7)
        var values: [Float] = [-200, -87.4, -87.33654, -1e-8, 0, 1e-8, 88.37626, 88.4, 200, .infinity, -.infinity]
        values += (0..<4000).map { _ in Float.random(in: -100...100, using: &generator) }
        while values.count % 8 != 0 { values.append(1) }
        for start in stride(from: 0, to: values.count, by: 8) {
            let lanes = SIMD8<Float>(values[start..<start + 8])
            let vector = FastMath.exp(lanes)
            for lane in 0..<8 {
                XCTAssertEqual(vector[lane].bitPattern, FastMath.exp(lanes[lane]).bitPattern, "exp(\(lanes[lane]))")
            }
        }
    }
}
