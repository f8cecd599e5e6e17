// Resize, Resize(shorter side) + CenterCrop against Pillow / torchvision outputs.

import Foundation
import SluiceTensor
import XCTest
@testable import SluiceMedia

final class ResampleTests: XCTestCase {
    func testResizeMatchesPillow() throws {
        let cases = Fixtures.manifest.resize
        XCTAssertFalse(cases.isEmpty)
        for item in cases {
            let source = try Fixtures.expectedImage(item.input)
            let filter = try XCTUnwrap(ResampleFilter(rawValue: item.filter))
            let resized = source.resized(width: item.width, height: item.height, filter: filter)
            let expected = try Fixtures.expectedImage(item.expected)
            // Same integer arithmetic as Pillow: expect identical bytes.
            assertClose(resized, expected, tolerance: 0, "resize \(item.name)")
        }
    }

    func testPipelineMatchesTorchvisionResizeAndCenterCrop() throws {
        for item in Fixtures.manifest.pipeline {
            let expected = try Fixtures.expectedImage(item.expected)
            if let shorter = item.shorter, let crop = item.crop, let filterName = item.filter {
                let filter = try XCTUnwrap(ResampleFilter(rawValue: filterName))
                let decoded = try ImageDecoder().decode(contentsOf: Fixtures.url(item.input))
                let resized = decoded.resizeShorterSide(to: shorter, filter: filter)
                XCTAssertEqual(resized.width, item.resized_width, item.name)
                XCTAssertEqual(resized.height, item.resized_height, item.name)
                // Decode (within 1 of Pillow at most) feeds the resize, so allow 1 for the whole chain.
                assertClose(resized.centerCrop(crop), expected, tolerance: 1, "pipeline \(item.name)")
            } else if let height = item.crop_height, let width = item.crop_width {
                let source = try Fixtures.expectedImage(item.input)
                assertClose(source.centerCrop(height: height, width: width), expected, tolerance: 0,
                            "centre crop \(item.name)")
            }
        }
    }

    func testShorterSideSizeFollowsTorchvision() {
        func size(_ width: Int, _ height: Int) -> (Int, Int) {
            let target = RGBImage(width: width, height: height, pixels: [UInt8](repeating: 0, count: width * height * 3))
                .shorterSideSize(256)
            return (target.width, target.height)
        }
        XCTAssertTrue(size(500, 375) == (341, 256), "int(256 * 500 / 375) = int(341.33)")
        XCTAssertTrue(size(375, 500) == (256, 341))
        XCTAssertTrue(size(300, 300) == (256, 256))
        XCTAssertTrue(size(1000, 3) == (85333, 256))
        XCTAssertTrue(size(640, 427) == (383, 256), "int(383.7)")
    }

    func testCenterCropRoundsHalfToEven() {
        // 7 columns, crop 4: (7 - 4) / 2 = 1.5 rounds to 2 in Python 3; 9 - 4 -> 2.5 rounds to 2.
        for (width, expectedLeft) in [(7, 2), (9, 2), (8, 2), (11, 4)] {
            let image = RGBImage(width: width, height: 1, pixels: (0..<(width * 3)).map { UInt8($0) })
            XCTAssertEqual(image.centerCrop(height: 1, width: 4).pixels.first, UInt8(expectedLeft * 3), "width \(width)")
        }
    }

    func testResizeToSameSizeIsIdentityAndTinySizesWork() {
        let image = RGBImage(width: 3, height: 2, pixels: (0..<18).map { UInt8($0 * 10) })
        XCTAssertEqual(image.resized(width: 3, height: 2), image)
        let dot = image.resized(width: 1, height: 1, filter: .bilinear)
        XCTAssertEqual(dot.pixels.count, 3)
        let big = image.resized(width: 17, height: 9, filter: .bicubic)
        XCTAssertEqual(big.pixels.count, 17 * 9 * 3)
    }

    /// Single-thread vs all threads give the same bytes (rows are independent), and a rough timing.
    func testParallelRowsAreDeterministicAndTimed() throws {
        let source = try ImageDecoder().decode(contentsOf: Fixtures.url("pipeline/grace_hopper.jpg"))
        let threads = Parallel.threads
        Parallel.configure(threads: 1)
        let single = source.resized(width: 224, height: 263, filter: .bicubic)
        Parallel.configure(threads: threads)
        let parallel = source.resized(width: 224, height: 263, filter: .bicubic)
        XCTAssertEqual(single, parallel)

        var best = Double.infinity
        for _ in 0..<3 {
            let started = Date()
            _ = source.resizeShorterSide(to: 256, filter: .bicubic).centerCrop(224)
            best = min(best, Date().timeIntervalSince(started))
        }
        print(String(format: "TIMING resize 512x600 -> 256x300 bicubic + crop 224 (%d threads): %.2f ms",
                     threads, best * 1000))
    }
}
