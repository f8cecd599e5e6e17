// Fixtures written by scripts/reference/images.py (Pillow 9.4 + libjpeg-turbo 2.1.5), described by
// Fixtures/manifest.json. Expected images are plain 8-bit RGB PNGs.

import Foundation
import XCTest
@testable import SluiceMedia

struct Manifest: Decodable {
    struct DecodeCase: Decodable {
        let name, input, expected, reference, note: String
        let width, height, tolerance: Int
    }
    struct ResizeCase: Decodable {
        let name, input, filter, expected: String
        let width, height: Int
    }
    struct PipelineCase: Decodable {
        let name, input, expected: String
        let shorter, crop: Int?
        let filter: String?
        let resized_width, resized_height: Int?
        let crop_height, crop_width: Int?
    }
    struct BadCase: Decodable {
        let input, error, pillow: String
    }
    struct TensorCase: Decodable {
        let name, input, expected: String
        let mean, std: [Float]
    }
    struct RawCheck: Decodable {
        let png, npy: String
    }
    let decode: [DecodeCase]
    let resize: [ResizeCase]
    let pipeline: [PipelineCase]
    let bad: [BadCase]
    let tensor: [TensorCase]
    let expected_raw: RawCheck
}

enum Fixtures {
    static let root: URL = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!

    static func url(_ relative: String) -> URL { root.appendingPathComponent(relative) }

    static let manifest: Manifest = {
        do {
            return try JSONDecoder().decode(Manifest.self, from: Data(contentsOf: url("manifest.json")))
        } catch {
            fatalError("cannot read Fixtures/manifest.json: \(error)")
        }
    }()

    /// Expected images are read with the decoder under test; `ExpectedImageTests` checks that this
    /// reading is exact against a raw .npy first.
    static func expectedImage(_ relative: String) throws -> RGBImage {
        try ImageDecoder(appliesEXIFOrientation: false).decode(contentsOf: url(relative))
    }
}

/// Largest absolute difference between two images' bytes, and how many bytes differ at all.
func pixelDifference(_ actual: RGBImage, _ expected: RGBImage) -> (max: Int, differing: Int) {
    precondition(actual.width == expected.width && actual.height == expected.height)
    var largest = 0, differing = 0
    for index in 0..<actual.pixels.count {
        let difference = abs(Int(actual.pixels[index]) - Int(expected.pixels[index]))
        if difference > 0 { differing += 1 }
        largest = max(largest, difference)
    }
    return (largest, differing)
}

/// Prints one line per compared case (collected into the report), then asserts the tolerance.
func assertClose(_ actual: RGBImage, _ expected: RGBImage, tolerance: Int, _ label: String,
                 file: StaticString = #filePath, line: UInt = #line) {
    guard actual.width == expected.width, actual.height == expected.height else {
        XCTFail("\(label): size \(actual.width)x\(actual.height), expected \(expected.width)x\(expected.height)",
                file: file, line: line)
        return
    }
    let (largest, differing) = pixelDifference(actual, expected)
    print("PIXELDIFF max=\(largest) differing=\(differing)/\(actual.pixels.count) tolerance=\(tolerance) | \(label)")
    XCTAssertLessThanOrEqual(largest, tolerance,
                             "\(label): max |Sluice - Pillow| = \(largest) grey levels, allowed \(tolerance) "
                             + "(\(differing) of \(actual.pixels.count) bytes differ)", file: file, line: line)
}
