import Foundation
import XCTest
import SluiceTensor

final class JSONTextTests: XCTestCase {
    func testQuotedEscapesWhatJSONRequiresAndRoundTrips() throws {
        let text = "a \"b\" \\ c/d\n\t\r\u{01} é 猫"
        let quoted = JSONText.quoted(text)
        XCTAssertEqual(quoted, "\"a \\\"b\\\" \\\\ c/d\\n\\t\\r\\u0001 é 猫\"")
        let decoded = try JSONDecoder().decode(String.self, from: Data(quoted.utf8))
        XCTAssertEqual(decoded, text)
    }
}
