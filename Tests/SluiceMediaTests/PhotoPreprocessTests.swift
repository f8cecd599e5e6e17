// The image → tensor path that `classify`, `run` and the service feed the models (FramePreparer: decode,
// EXIF orientation, resize, center crop, normalise into a batch slot), against PIL + torchvision for the
// bundled photos, one recipe per image classifier. Fixtures: scripts/reference/preprocess.py.

import Foundation
import SluiceModels
import SluiceTestSupport
import XCTest
@testable import SluiceMedia

final class PhotoPreprocessTests: XCTestCase {
    struct PhotoManifest: Decodable {
        struct Recipe: Decodable {
            let name: String
            let resize_shorter_side, crop_size: Int
            let interpolation: String
            let mean, std: [Float]
        }
        struct Case: Decodable { let recipe, photo, expected: String }
        let recipes: [Recipe]
        let cases: [Case]
    }

    let manifest: PhotoManifest = {
        try! JSONDecoder().decode(PhotoManifest.self, from: Data(contentsOf: Fixtures.url("photos/manifest.json")))
    }()

    /// Every image classifier's recipe has fixtures, with the same constants as the reference used.
    func recipe(for card: ModelCard) -> PhotoManifest.Recipe? {
        guard let p = card.preprocessing else { return nil }
        return manifest.recipes.first {
            $0.resize_shorter_side == p.resizeShorterSide && $0.crop_size == p.cropSize
                && $0.interpolation == p.interpolation.rawValue && close($0.mean, p.mean) && close($0.std, p.std)
        }
    }

    /// Constants equal up to float32 rounding (Swift computes 0.485 * 255 in Float, Python in double).
    func close(_ a: [Float], _ b: [Float]) -> Bool {
        a.count == b.count && zip(a, b).allSatisfy { abs($0 - $1) <= 1e-4 * abs($1) }
    }

    func testEveryClassifierRecipeHasReferenceFixtures() throws {
        let classifiers = ModelRegistry.cards.filter { $0.task == .imageClassification }
        XCTAssertGreaterThan(classifiers.count, 3)
        for card in classifiers {
            XCTAssertNotNil(recipe(for: card),
                            "\(card.name): its preprocessing \(String(describing: card.preprocessing)) has no fixture; "
                                + "add it to RECIPES in scripts/reference/preprocess.py and rerun it")
        }
    }

    /// The float32 slot the model reads, brought back to grey levels (x * std + mean), is within one grey
    /// level of torchvision's chain for every photo and recipe.
    func testPreparedPhotosMatchTorchvisionWithinOneGreyLevel() throws {
        let cards = ["efficientnet_lite0", "hornet_tiny_7x7", "vig_tiny"].map { try! ModelRegistry.card(named: $0) }
        var compared = 0
        for card in cards {
            let recipe = try XCTUnwrap(recipe(for: card), "\(card.name): no fixture for its recipe")
            let cases = manifest.cases.filter { $0.recipe == recipe.name }
            XCTAssertEqual(cases.count, 6, "\(recipe.name): one case per bundled photo")
            let preparer = FramePreparer(card.input.image)
            for item in cases {
                let photo = TestResources.repository.appendingPathComponent(item.photo).path
                let prepared = preparer.prepare(image: try preparer.decode(path: photo))
                let expected = try Fixtures.expectedImage("photos/" + item.expected)
                XCTAssertEqual([prepared.width, prepared.height], [expected.width, expected.height], item.photo)
                var slot = [Float](repeating: .nan, count: prepared.width * prepared.height * 3)
                slot.withUnsafeMutableBufferPointer { preparer.normalize(prepared, into: $0) }
                var largest: Float = 0, differing = 0
                for index in 0..<slot.count {
                    let channel = index % 3
                    let grey = slot[index] * recipe.std[channel] + recipe.mean[channel]
                    let difference = abs(grey - Float(expected.pixels[index]))
                    largest = max(largest, difference)
                    if difference > 0.5 { differing += 1 }
                }
                print(String(format: "PREPROCESS %@ %@: max %.3f grey levels, %d of %d values differ by more than 0.5",
                             card.name, item.photo, largest, differing, slot.count))
                XCTAssertLessThanOrEqual(largest, 1.001, "\(card.name) \(item.photo): \(largest) grey levels from torchvision")
                compared += 1
            }
        }
        XCTAssertEqual(compared, 18)
    }
}
