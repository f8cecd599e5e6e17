import Foundation
import XCTest
@testable import SluiceModels

/// Found by scripts/fuzz checkpoint (LeakSanitizer): a pickle can put a container inside itself, a
/// reference cycle that outlived every load of the file. The machine's arena empties its containers
/// when the reader is done with them, so nothing a hostile file builds stays behind.
final class PickleCycleTests: XCTestCase {
    /// EMPTY_LIST, BINPUT 0, BINGET 0, APPEND, STOP: a list that holds itself; and the same through a
    /// dict's value and an unknown class's BUILD state.
    static let cycles: [(String, [UInt8])] = [
        ("list in itself", [0x80, 0x02, 0x5d, 0x71, 0x00, 0x68, 0x00, 0x61, 0x2e]),
        ("dict value", [0x80, 0x02, 0x7d, 0x71, 0x00, 0x58, 0x01, 0x00, 0x00, 0x00, 0x6b, 0x68, 0x00, 0x73, 0x2e]),
        ("object state", [0x80, 0x02, 0x63] + Array("m\nC\n".utf8) + [0x29, 0x52, 0x71, 0x00, 0x68, 0x00, 0x62, 0x2e]),
    ]

    final class WeakBox { weak var object: AnyObject? }

    /// Loads `bytes` and keeps only a weak reference to the container it built.
    func build(_ name: String, _ bytes: [UInt8], arena: PickleArena) throws -> WeakBox {
        let box = WeakBox()
        let value = try bytes.withUnsafeBytes { raw in
            var machine = PickleMachine(bytes: raw, file: name, arena: arena)
            return try machine.load()
        }
        switch value {
        case .list(let list): box.object = list; XCTAssertEqual(list.items.count, 1, name)
        case .dict(let dict): box.object = dict; XCTAssertNotNil(dict["k"], name)
        case .object(let object): box.object = object; XCTAssertNotNil(object.state, name)
        default: XCTFail("\(name): \(value)")
        }
        return box
    }

    func testContainersThatHoldThemselvesAreFreedWhenTheArenaIsReleased() throws {
        for (name, bytes) in Self.cycles {
            // Without the release, the cycle alone keeps the container alive after arena and value are gone.
            let leaked = try build(name, bytes, arena: PickleArena())
            XCTAssertNotNil(leaked.object, "\(name): the cycle is real")
            let arena = PickleArena()
            let freed = try build(name, bytes, arena: arena)
            arena.release()
            XCTAssertNil(freed.object, "\(name): released, the cycle is broken and the container freed")
        }
    }
}
