// Normalisation into NHWC float32 tensors, single images and batch slots.

import Foundation
import SluiceModels
import SluiceTensor
import XCTest
@testable import SluiceMedia

final class PreprocessTests: XCTestCase {
    func testToTensorMatchesNumpyFloat32() throws {
        for item in Fixtures.manifest.tensor {
            let image = try Fixtures.expectedImage(item.input)
            let tensor = image.toTensor(mean: item.mean, std: item.std)
            let expected = try NPY.read(contentsOf: Fixtures.url(item.expected))
            XCTAssertEqual(tensor.shape, [1, image.height, image.width, 3])
            XCTAssertEqual(tensor.shape, expected.shape)
            // Same float32 operations in the same order: bit-identical.
            XCTAssertEqual(tensor.data, expected.data, "\(item.name): (pixel - mean) / std must equal numpy exactly")
        }
    }

    func testImageNetPresetIsWithinRoundingOfTorchvisionChain() throws {
        let image = try Fixtures.expectedImage("tensor/small.png")
        let tensor = image.toTensor(.imageNet)
        let torchvision = try NPY.read(contentsOf: Fixtures.url("tensor/small_imagenet_torchvision.npy"))
        var largest: Float = 0
        for index in 0..<tensor.count { largest = max(largest, abs(tensor.data[index] - torchvision.data[index])) }
        print("TENSORDIFF imagenet preset vs torchvision ToTensor+Normalize: max abs \(largest)")
        XCTAssertLessThanOrEqual(largest, 1e-5, "float32 rounding of /255 first vs after: max abs diff \(largest), allowed 1e-5")
    }

    func testEfficientNetLitePreset() {
        let image = RGBImage(width: 2, height: 1, pixels: [0, 127, 255, 1, 2, 3])
        let lite: [Float] = [-127.0 / 128, 0, 1, -126.0 / 128, -125.0 / 128, -124.0 / 128]
        XCTAssertEqual(image.toTensor(.efficientNetLite).data, lite)
        let plain: [Float] = [0, 127, 255, 1, 2, 3]
        XCTAssertEqual(image.toTensor(.none).data, plain)
    }

    func testBatchSlotsAreWrittenInPlace() throws {
        let a = try Fixtures.expectedImage("tensor/small.png")
        let b = a.oriented(.rotated180)
        var batch = Tensor(zeros: [3, a.height, a.width, 3])
        let storage = batch.data.withUnsafeBufferPointer { $0.baseAddress }
        a.write(into: &batch, at: 0, .imageNet)
        b.write(into: &batch, at: 2, .imageNet)
        XCTAssertEqual(batch.data.withUnsafeBufferPointer { $0.baseAddress }, storage, "no copy of the batch storage")
        let slot = a.height * a.width * 3
        XCTAssertEqual(Array(batch.data[0..<slot]), a.toTensor(.imageNet).data)
        XCTAssertTrue(batch.data[slot..<(2 * slot)].allSatisfy { $0 == 0 }, "slot 1 untouched")
        XCTAssertEqual(Array(batch.data[(2 * slot)...]), b.toTensor(.imageNet).data)
    }
}
