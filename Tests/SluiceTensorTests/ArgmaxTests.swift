import XCTest
import SluiceTensor

final class ArgmaxTests: XCTestCase {
    func testArgmaxOverTheLastAxisTakesTheFirstOfEqualMaxima() {
        let x = Tensor(shape: [1, 2, 2, 3], data: [0, 2, 1,   5, 5, 4,   -1, -3, -2,   0, 0, 0])
        XCTAssertEqual(x.argmaxLastAxis(), [1, 0, 0, 0])
    }

    func testArgmaxMatchesANaiveLoopAcrossThreadCounts() {
        var generator = SplitMix64(seed: 7)
        let (rows, classes) = (20_000, 13)
        let x = Tensor(shape: [rows, classes], data: (0..<(rows * classes)).map { _ in
            Float(Int.random(in: 0..<8, using: &generator))   // many ties
        })
        let expected = (0..<rows).map { r in
            (0..<classes).reduce(0) { best, k in x.data[r * classes + k] > x.data[r * classes + best] ? k : best }
        }
        defer { Parallel.configure(threads: nil) }
        for threads in [1, 2] {
            Parallel.configure(threads: threads)
            XCTAssertEqual(x.argmaxLastAxis(), expected, "\(threads) threads")
        }
    }
}
