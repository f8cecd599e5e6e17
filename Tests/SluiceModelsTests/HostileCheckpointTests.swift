// Checkpoints that ask for huge allocations are refused before allocating: a broadcast view (stride 0)
// of one stored float that would materialise as 100 GB, a storage size field claiming 2^40 elements, and
// safetensors / NPY headers whose shapes overflow 64 bits. Limit: maxCheckpointTensorElements (2^28
// elements, 1 GiB as float32). Fixtures: scripts/reference/hostile.py.

import Foundation
import XCTest
import SluiceModels
import SluiceTestSupport

final class HostileCheckpointTests: XCTestCase {
    static let directory = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!.appendingPathComponent("hostile")

    private func message(loading url: URL) -> String? {
        do {
            _ = try Checkpoint.load(url)
            return nil
        } catch {
            return String(describing: error)
        }
    }

    private func temporary(_ name: String, _ bytes: [UInt8]) throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-hostile-\(UUID().uuidString)-\(name)")
        try Data(bytes).write(to: url)
        addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url
    }

    func testBroadcastViewOf100GBIsRefused() throws {
        let url = Self.directory.appendingPathComponent("expanded_100gb.pth")
        let text = try XCTUnwrap(message(loading: url), "a 25e9-element tensor must not load")
        XCTAssertTrue(text.contains("tensor 'weight' (shape [100000, 250000]) has 25000000000 elements, more than the limit of 268435456"), text)
        XCTAssertTrue(text.contains(url.lastPathComponent), text)
    }

    func testStorageSizeFieldClaiming2To40ElementsIsRefused() throws {
        let url = Self.directory.appendingPathComponent("legacy_huge_storage.pth")
        let text = try XCTUnwrap(message(loading: url))
        XCTAssertTrue(text.contains("storage '"), text)
        XCTAssertTrue(text.contains(url.lastPathComponent), text)
    }

    /// Found by scripts/fuzz checkpoint: a 5 KB torch zip whose data descriptor claims a 2.8 GB entry had
    /// that much reserved before a byte was read. Entry sizes are now checked against the file first.
    func testZipEntryClaimingMoreThanTheFileHoldsIsRefused() throws {
        let url = Self.directory.deletingLastPathComponent().appendingPathComponent("fuzz/zip_entry_claims_2gb.pth")
        XCTAssertEqual(message(loading: url), "\(url.path): truncated: zip entry 'zip_protocol4/data/5' claims "
                       + "2825527545 stored bytes, the file holds 5345")
    }

    /// Found by scripts/fuzz checkpoint: a ZIP64 field giving an offset past 2^63 made ZIPFoundation trap
    /// (Int64 conversion) while listing the entries. The directory is now checked before ZIPFoundation reads it.
    func testZip64OffsetsBeyondTheFileAreRefusedBeforeZIPFoundationReadsThem() throws {
        let url = Self.directory.deletingLastPathComponent().appendingPathComponent("fuzz/zip64_offset_past_2_63.pth")
        let text = try XCTUnwrap(message(loading: url))
        XCTAssertEqual(text, "\(url.path): malformed checkpoint: zip directory: the central directory is said to start at "
                       + "offset 14627691589699371474, past its end at 746")
    }

    /// A deflated entry can expand at most 1032:1: 10^9 bytes claimed from a few dozen is refused.
    func testDeflatedZipEntryClaimingMoreThanDeflateCanExpandIsRefused() throws {
        let url = Self.directory.appendingPathComponent("npz_claims_1gb.npz")
        let text = try XCTUnwrap(message(loading: url))
        XCTAssertTrue(text.hasPrefix(url.path), text)
        XCTAssertNotNil(text.range(of: #"zip entry 'w.npy' claims 1000000000 bytes from [0-9]+ deflated bytes"#,
                                   options: .regularExpression), text)
    }

    func testSafetensorsShapeOverflowingInt64IsRefused() throws {
        let header = #"{"w":{"dtype":"F32","shape":[4294967296,4294967296,0],"data_offsets":[0,0]}}"#
        var bytes = withUnsafeBytes(of: UInt64(header.utf8.count).littleEndian) { Array($0) }
        bytes += Array(header.utf8)
        let url = try temporary("huge.safetensors", bytes)
        let text = try XCTUnwrap(message(loading: url))
        XCTAssertTrue(text.contains("tensor 'w' is F32 [4294967296, 4294967296, 0] but spans 0 bytes"), text)
    }

    func testNPYShapeOverflowingInt64IsRefused() throws {
        var header = "{'descr': '<f4', 'fortran_order': True, 'shape': (4294967296, 4294967296, 0), }"
        while (10 + header.utf8.count + 1) % 64 != 0 { header += " " }
        header += "\n"
        var bytes: [UInt8] = [0x93] + Array("NUMPY".utf8) + [1, 0]
        bytes += withUnsafeBytes(of: UInt16(header.utf8.count).littleEndian) { Array($0) } + Array(header.utf8)
        let url = try temporary("huge.npy", bytes)
        let text = try XCTUnwrap(message(loading: url))
        XCTAssertTrue(text.contains("more bytes than fit in 64 bits") || text.contains("too large"), text)
    }
}
