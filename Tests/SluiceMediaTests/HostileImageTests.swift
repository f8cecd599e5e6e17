// Small files that ask for huge allocations are refused from their headers, under the documented pixel
// limit (ImageDecoder.maxPixels, 2^28 by default). Fixtures: scripts/reference/hostile.py.

import Foundation
import XCTest
@testable import SluiceMedia

final class HostileImageTests: XCTestCase {
    private func refusal(_ relative: String, decoder: ImageDecoder = ImageDecoder()) -> ImageError? {
        do {
            _ = try decoder.decode(contentsOf: Fixtures.url(relative))
            return nil
        } catch {
            return error
        }
    }

    func testHeadersClaimingBillionsOfPixelsAreRefusedBeforeDecoding() throws {
        for (file, side) in [("hostile/png_100000x100000.png", 100_000), ("hostile/jpeg_65000x65000.jpg", 65_000)] {
            let path = Fixtures.url(file).path
            let error = refusal(file)
            XCTAssertEqual(error, .tooLarge(file: path, width: side, height: side, maxPixels: 1 << 28), file)
            XCTAssertEqual(error.map(String.init(describing:)),
                           "\(path): image is \(side)x\(side) pixels, more than the limit of 268435456")
        }
    }

    /// A 49 KB PNG that inflates to 48 MiB: decoded under the default limit, refused under a lower one
    /// before the pixel buffer exists.
    func testDecompressionBombIsBoundedByThePixelLimit() throws {
        let file = "hostile/png_bomb_4096.png"
        XCTAssertLessThan(try Data(contentsOf: Fixtures.url(file)).count, 64 * 1024)
        let image = try ImageDecoder().decode(contentsOf: Fixtures.url(file))
        XCTAssertEqual([image.width, image.height], [4096, 4096])
        XCTAssertTrue(image.pixels.allSatisfy { $0 == 0 })
        XCTAssertEqual(refusal(file, decoder: ImageDecoder(maxPixels: 1 << 22)),
                       .tooLarge(file: Fixtures.url(file).path, width: 4096, height: 4096, maxPixels: 1 << 22))
    }
}
