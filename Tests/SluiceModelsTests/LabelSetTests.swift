import Foundation
import XCTest
import SluiceModels
import SluiceTestSupport

final class LabelSetTests: XCTestCase {
    /// The compiled-in labels are those of the tsv they were generated from (scripts/labels/generate).
    func testImageNet1kLabelsMatchTheirSourceFile() throws {
        let tsv = TestResources.repository.appendingPathComponent("scripts/labels/imagenet1k_labels.tsv")
        let expected = try String(contentsOf: tsv, encoding: .utf8).split(separator: "\n").map {
            String($0.split(separator: "\t", maxSplits: 1)[1])
        }
        XCTAssertEqual(expected.count, 1000)
        XCTAssertEqual(LabelSet.imageNet1k.labels, expected)
        XCTAssertEqual(LabelSet.imageNet1k.label(281), "tabby, tabby cat")
    }
}
