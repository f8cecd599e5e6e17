import XCTest
import SluiceModels
import SluiceTensor

/// The class map at an image's own size equals the argmax of the logits resized to it (mmseg resizes
/// logits, then takes the argmax), though it only interpolates near class boundaries.
final class ClassMapResizeTests: XCTestCase {
    func testResizedArgmaxEqualsTheArgmaxOfResizedLogits() {
        var random = SplitMix64(seed: 7)
        for (h, w, c, oh, ow) in [(5, 7, 4, 17, 23), (16, 16, 150, 61, 64), (9, 4, 3, 9, 13), (12, 10, 6, 5, 4), (1, 1, 3, 3, 2)] {
            // Smooth logits (few regions) plus noise, so both shortcuts and boundary pixels occur.
            let logits = Tensor(shape: [1, h, w, c], data: (0..<(h * w * c)).map { i in
                let (pixel, ch) = (i / c, i % c)
                let (y, x) = (pixel / w, pixel % w)
                return Float((y * 3 + x * 5 + ch * 7) % 11) + Float.random(in: 0..<0.5, using: &random)
            })
            let resized = Interpolate.bilinear(logits, height: oh, width: ow)
            let expected = resized.argmaxLastAxis().map(UInt16.init)
            let map = ClassMap(argmaxOf: logits, width: ow, height: oh)
            XCTAssertEqual(map.width, ow); XCTAssertEqual(map.height, oh)
            XCTAssertEqual(map.classes, expected, "\(h)x\(w)x\(c) -> \(oh)x\(ow)")
        }
    }
}
