import Foundation
import XCTest
import SluiceModels
import SluiceTensor

/// Pooling (F.max_pool2d / F.avg_pool2d / adaptive average), permutes and the .npy reader.
final class PoolingAndTensorTests: XCTestCase {
    func checkPool(_ name: String, _ kind: Pooling.Kind, kernel: Int, stride: Int, padding: Int,
                   file: StaticString = #filePath, line: UInt = #line) throws {
        let x = try Fixtures.tensor("pool_x").nchwToNHWC()
        let y = Pooling.pool2d(x, kind: kind, kernel: (kernel, kernel), stride: (stride, stride),
                               padding: .symmetric(padding)).nhwcToNCHW()
        assertParity(y, try Fixtures.tensor("pool_" + name), "pool " + name, file: file, line: line)
    }

    func testMaxPool3x3Stride2Padded() throws { try checkPool("max_k3s2p1", .max, kernel: 3, stride: 2, padding: 1) }
    func testMaxPool2x2() throws { try checkPool("max_k2s2", .max, kernel: 2, stride: 2, padding: 0) }
    func testAvgPoolCountIncludePad() throws {
        try checkPool("avg_k3s2p1_incl", .average(countIncludePad: true), kernel: 3, stride: 2, padding: 1)
    }
    func testAvgPoolCountExcludePad() throws {
        try checkPool("avg_k3s2p1_excl", .average(countIncludePad: false), kernel: 3, stride: 2, padding: 1)
        try checkPool("avg_k3s1p1_excl", .average(countIncludePad: false), kernel: 3, stride: 1, padding: 1)
    }
    func testAvgPool2x2() throws {
        try checkPool("avg_k2s2", .average(countIncludePad: true), kernel: 2, stride: 2, padding: 0)
    }

    func testGlobalAndAdaptiveAveragePool() throws {
        let y = Pooling.globalAverage(try Fixtures.tensor("pool_x").nchwToNHWC())
        assertParity(y, try Fixtures.tensor("pool_adaptive_avg"), "pool adaptive_avg_pool2d(1)")
        assertParity(y, try Fixtures.tensor("pool_global_avg"), "pool global mean")
    }

    func testPermute() throws {
        let x = try Fixtures.tensor("permute_x")
        let nhwc = try Fixtures.tensor("permute_0231")
        assertNonTrivial(nhwc, "permute")
        XCTAssertEqual(x.permuted([0, 2, 3, 1]), nhwc)
        XCTAssertEqual(x.nchwToNHWC(), nhwc)
        XCTAssertEqual(nhwc.nhwcToNCHW(), x)
        XCTAssertEqual(x.permuted([3, 1, 0, 2]), try Fixtures.tensor("permute_3102"))
        XCTAssertEqual(try Fixtures.tensor("permute2d_x").permuted([1, 0]), try Fixtures.tensor("permute2d_10"))
        XCTAssertEqual(x.permuted([0, 1, 2, 3]), x)
        print("[parity] permute: exact (max relative error 0)")
    }

    func testReshaped() {
        let x = randomTensor([2, 3, 4], seed: 1)
        XCTAssertEqual(x.reshaped([-1, 4]).shape, [6, 4])
        XCTAssertEqual(x.reshaped([2, -1]).data, x.data)
    }

    func testNPYDtypesAndVersions() throws {
        let expected = try Fixtures.tensor("npy_expected")
        assertNonTrivial(expected, "npy")
        XCTAssertEqual(try Fixtures.tensor("npy_float64"), expected)
        XCTAssertEqual(try Fixtures.tensor("npy_v2_float32"), expected)
        let half = try Fixtures.tensor("npy_float16")
        XCTAssertEqual(half.shape, expected.shape)
        XCTAssertLessThanOrEqual(Tensor.maxRelativeError(half, expected), 1e-3)
        XCTAssertEqual(try Fixtures.tensor("npy_int32"), Tensor(shape: [3, 5], data: (-7...7).map(Float.init)))
        XCTAssertEqual(try Fixtures.tensor("npy_1d"), Tensor(shape: [3], data: [1.5, -2, 3.25]))
        // Round trip through the writer.
        XCTAssertEqual(try NPY.decode(NPY.encode(expected)), expected)
        let vector = Tensor(shape: [3], data: [1, 2, 3])
        XCTAssertEqual(try NPY.decode(NPY.encode(vector)), vector)
        XCTAssertEqual((NPY.encode(expected).count - expected.count * 4) % 64, 0, "header padded to 64 bytes")
    }

    /// A header whose shape is negative or overflows is one error, not a trap.
    func testNPYRejectsImpossibleShapes() {
        func npy(shape: String) -> Data {
            let header = "{'descr': '<f4', 'fortran_order': False, 'shape': \(shape), }\n"
            let length = UInt16(header.utf8.count)
            return Data([0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(length & 0xff), UInt8(length >> 8)]
                        + Array(header.utf8) + [UInt8](repeating: 0, count: 16))
        }
        XCTAssertEqual(try NPY.decode(npy(shape: "(2, 2)")).shape, [2, 2])
        for shape in ["(-1, 4)", "(4611686018427387904, 4)", "(3, 3)"] {
            XCTAssertThrowsError(try NPY.decode(npy(shape: shape)), shape) { error in
                XCTAssertTrue("\(error)".hasPrefix("not a .npy array"), "\(error)")
            }
        }
    }

    func testMaxRelativeErrorDetectsDifferences() {
        let a = Tensor(shape: [3], data: [1, -2, 4])
        XCTAssertEqual(Tensor.maxRelativeError(a, a), 0)
        XCTAssertEqual(Tensor.maxRelativeError(Tensor(shape: [3], data: [1, -2, 5]), a), 0.25)
        XCTAssertEqual(Tensor.maxRelativeError(Tensor(shape: [3], data: [1, .nan, 4]), a), .infinity)
    }
}
