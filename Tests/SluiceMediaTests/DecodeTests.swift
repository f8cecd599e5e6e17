// Decoding against Pillow's output for the same files, plus the bad inputs and the error paths.

#if canImport(Glibc)
@preconcurrency import Glibc
#endif
import Foundation
import SluiceModels
import SluiceTensor
import XCTest
@testable import SluiceMedia

final class ExpectedImageTests: XCTestCase {
    /// The expected images are PNGs read by the code under test; first make sure that reading is exact.
    func testExpectedPNGsReadExactlyLikeRawArray() throws {
        let check = Fixtures.manifest.expected_raw
        let image = try Fixtures.expectedImage(check.png)
        let raw = try NPY.read(contentsOf: Fixtures.url(check.npy))
        XCTAssertEqual(raw.shape, [image.height, image.width, 3])
        XCTAssertEqual(image.pixels.map(Float.init), raw.data, "8-bit RGB PNG must decode bit-exactly")
    }
}

final class DecodeTests: XCTestCase {
    private func runDecodeCases(where include: (Manifest.DecodeCase) -> Bool) throws {
        let cases = Fixtures.manifest.decode.filter(include)
        XCTAssertFalse(cases.isEmpty)
        let decoder = ImageDecoder()
        for item in cases {
            let decoded = try decoder.decode(contentsOf: Fixtures.url(item.input))
            let expected = try Fixtures.expectedImage(item.expected)
            XCTAssertEqual(decoded.width, item.width, item.name)
            XCTAssertEqual(decoded.height, item.height, item.name)
            let tolerance = item.tolerance
            assertClose(decoded, expected, tolerance: tolerance,
                        "decode \(item.name) vs \(item.reference)" + (item.note.isEmpty ? "" : " [\(item.note)]"))
        }
    }

    func testJPEGMatchesPillow() throws {
        try runDecodeCases { $0.input.hasPrefix("decode/") && $0.input.hasSuffix(".jpg") }
    }

    func testPNGMatchesPillow() throws {
        try runDecodeCases { $0.input.hasPrefix("decode/") && $0.input.hasSuffix(".png") }
    }

    func testEXIFOrientationMatchesPillowExifTranspose() throws {
        try runDecodeCases { $0.input.hasPrefix("exif/") }
    }

    func testDecodingDataEqualsDecodingFile() throws {
        for input in ["decode/q90_420.jpg", "decode/rgba16.png", "exif/orientation6_be.jpg"] {
            let url = Fixtures.url(input)
            let fromFile = try ImageDecoder().decode(contentsOf: url)
            let fromData = try ImageDecoder().decode(Data(contentsOf: url), name: input)
            XCTAssertEqual(fromFile, fromData, input)
        }
    }

    func testOrientationCanBeLeftAlone() throws {
        let url = Fixtures.url("exif/orientation6_le.jpg")
        let stored = try ImageDecoder(appliesEXIFOrientation: false).decode(contentsOf: url)
        let upright = try ImageDecoder().decode(contentsOf: url)
        XCTAssertEqual(stored.width, upright.height)
        XCTAssertEqual(stored.oriented(.rotatedClockwise), upright)
    }

    func testOrientationsComposeAsExpected() {
        let image = RGBImage(width: 5, height: 3, pixels: (0..<45).map { UInt8($0) })
        XCTAssertEqual(image.oriented(.up), image)
        for orientation in [EXIFOrientation.mirrored, .rotated180, .flippedVertically, .transposed, .transversed] {
            XCTAssertEqual(image.oriented(orientation).oriented(orientation), image, "\(orientation) is an involution")
        }
        XCTAssertEqual(image.oriented(.rotatedClockwise).oriented(.rotatedCounterClockwise), image)
        let clockwise = image.oriented(.rotatedClockwise)
        XCTAssertEqual(clockwise.width, 3)
        XCTAssertEqual(clockwise.height, 5)
        // Rotating clockwise puts the bottom-left source pixel at the top-left.
        XCTAssertEqual(clockwise[0, 0].r, image[0, 2].r)
    }

    func testOrientationParserRejectsMalformedBlocksWithoutCrashing() {
        func parse(_ bytes: [UInt8]) -> EXIFOrientation? {
            bytes.withUnsafeBytes { EXIF.orientation(tiff: $0) }
        }
        let little: [UInt8] = [0x49, 0x49, 42, 0, 8, 0, 0, 0, 1, 0, 0x12, 0x01, 3, 0, 1, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0]
        let big: [UInt8] = [0x4D, 0x4D, 0, 42, 0, 0, 0, 8, 0, 1, 0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 3, 0, 0, 0, 0, 0, 0]
        XCTAssertEqual(parse(little), .rotatedClockwise)
        XCTAssertEqual(parse(big), .rotated180)
        var asLong = little
        asLong[12] = 4  // LONG
        XCTAssertEqual(parse(asLong), .rotatedClockwise)
        var twoValues = little
        twoValues[14] = 2
        XCTAssertNil(parse(twoValues), "Pillow reads count 2 as a tuple, which is no orientation")
        var outOfRange = little
        outOfRange[18] = 9
        XCTAssertNil(parse(outOfRange))
        var badOffset = little
        badOffset[4] = 0xF0
        XCTAssertNil(parse(badOffset))
        XCTAssertNil(parse(Array(little.prefix(15))))
        XCTAssertNil(parse([0x49, 0x49, 43, 0, 8, 0, 0, 0]))
        XCTAssertNil(parse([]))
        var huge = little
        huge[8] = 0xFF
        huge[9] = 0xFF  // 65535 entries claimed, 1 present
        XCTAssertEqual(parse(huge), .rotatedClockwise, "the orientation entry comes first")
        huge[10] = 0x13
        XCTAssertNil(parse(huge))
        // Every cut of a valid block, each in a buffer of exactly its length: a read one byte past the end
        // traps in the checked build `scripts/test` also runs (debug, AddressSanitizer).
        for block in [little, big] {
            for length in 0..<20 {
                XCTAssertNil(parse(Array(block.prefix(length))), "cut to \(length) bytes: the value is not all there")
            }
            for length in 20...block.count { XCTAssertNotNil(parse(Array(block.prefix(length)))) }
        }
    }

    func testEXIFOfEveryCutJPEGHeaderIsReadWithinBounds() throws {
        let file = try [UInt8](Data(contentsOf: Fixtures.url("exif/orientation6_le.jpg")))
        let full = file.withUnsafeBytes { EXIF.jpegOrientation($0) }
        XCTAssertEqual(full, .rotatedClockwise)
        var found = 0
        for length in 0..<min(file.count, 512) {
            let cut = Array(file.prefix(length))
            if cut.withUnsafeBytes({ EXIF.jpegOrientation($0) }) == full { found += 1 }
        }
        XCTAssertGreaterThan(found, 0, "a header cut after the APP1 segment still has its orientation")
    }

    func testFormatIsFoundByMagicBytesNotByName() throws {
        func sniff(_ relative: String) throws -> ImageFormat? {
            ImageFormat.sniff(try Data(contentsOf: Fixtures.url(relative)))
        }
        XCTAssertEqual(try sniff("decode/q90_420.jpg"), .jpeg)
        XCTAssertEqual(try sniff("decode/rgb8.png"), .png)
        XCTAssertEqual(try sniff("bad/image.gif.png"), .gif)
        XCTAssertNil(try sniff("bad/text.jpg"))
        XCTAssertNil(try sniff("bad/empty.jpg"))
    }
}

final class DecodeErrorTests: XCTestCase {
    private func decodeError(_ url: URL, decoder: ImageDecoder = ImageDecoder()) -> ImageError? {
        do {
            _ = try decoder.decode(contentsOf: url)
            return nil
        } catch {
            return error
        }
    }

    private func kind(_ error: ImageError) -> String {
        switch error {
        case .unreadable: return "unreadable"
        case .empty: return "empty"
        case .unknownFormat: return "unknownFormat"
        case .unsupported: return "unsupported"
        case .truncated: return "truncated"
        case .corrupt: return "corrupt"
        case .tooLarge: return "tooLarge"
        }
    }

    private func assertOneLineNamingFile(_ error: ImageError, _ url: URL, file: StaticString = #filePath,
                                         line: UInt = #line) {
        let text = error.description
        XCTAssertTrue(text.hasPrefix(url.path + ": "), "message must start with the file: \(text)", file: file, line: line)
        XCTAssertFalse(text.contains("\n"), "message must be one line: \(text)", file: file, line: line)
        XCTAssertEqual(error.file, url.path, file: file, line: line)
    }

    func testBadInputsGiveTheRightError() {
        for item in Fixtures.manifest.bad {
            let url = Fixtures.url(item.input)
            guard let error = decodeError(url) else {
                XCTFail("\(item.input) decoded; expected \(item.error) (Pillow: \(item.pillow))")
                continue
            }
            print("ERROR \(item.input): \(error)   [Pillow: \(item.pillow)]")
            XCTAssertEqual(kind(error), item.error, "\(item.input): \(error)")
            assertOneLineNamingFile(error, url)
        }
    }

    func testSpecificMessages() throws {
        let truncated = decodeError(Fixtures.url("bad/truncated.jpg"))
        XCTAssertTrue(truncated?.description.contains("Premature end of JPEG file") ?? false, "\(String(describing: truncated))")
        let crc = decodeError(Fixtures.url("bad/bad_crc_idat.png"))
        XCTAssertTrue(crc?.description.contains("CRC") ?? false, "\(String(describing: crc))")
        let text = decodeError(Fixtures.url("bad/text.jpg"))
        XCTAssertTrue(text?.description.contains("54 68 69 73") ?? false, "shows the leading bytes: \(String(describing: text))")
        let gif = decodeError(Fixtures.url("bad/image.gif.png"))
        XCTAssertTrue(gif?.description.contains("GIF") ?? false, "\(String(describing: gif))")
    }

    func testMissingFileAndDirectoryAreUnreadable() throws {
        let missing = Fixtures.url("no/such/file.jpg")
        let missingError = try XCTUnwrap(decodeError(missing))
        XCTAssertEqual(missingError, .unreadable(file: missing.path, reason: "No such file or directory"))
        assertOneLineNamingFile(missingError, missing)

        let directory = Fixtures.url("decode")
        XCTAssertEqual(decodeError(directory), .unreadable(file: directory.path, reason: "is a directory"))
    }

    func testFIFOIsRefusedWithoutBlocking() throws {
        let folder = try temporaryFolder()
        let fifo = folder.appendingPathComponent("pipe.jpg")
        XCTAssertEqual(mkfifo(fifo.path, 0o644), 0)
        // Opening a FIFO for reading blocks until a writer appears, unless O_NONBLOCK: this must return.
        XCTAssertEqual(decodeError(fifo), .unreadable(file: fifo.path, reason: "not a regular file"))
    }

    func testPermissionDeniedFileIsUnreadable() throws {
        let folder = try temporaryFolder()
        let locked = folder.appendingPathComponent("locked.jpg")
        try Data(contentsOf: Fixtures.url("decode/q90_420.jpg")).write(to: locked)
        XCTAssertEqual(chmod(locked.path, 0), 0)

        // Root (which runs these tests here) reads mode-000 files anyway (CAP_DAC_OVERRIDE). Linux drops
        // those capabilities while the thread's filesystem uid is not 0, so check as an ordinary user by
        // switching the filesystem uid (setfsuid(2), not in Swift's Glibc module, hence dlsym), and switch
        // back afterwards.
        var switchedIdentity = false
        if geteuid() == 0 {
            guard let setFilesystemUID = filesystemUIDSetter() else {
                throw XCTSkip("running as root and setfsuid is unavailable: chmod 000 cannot make a file "
                              + "unreadable to root, so permission denied cannot be produced here")
            }
            _ = setFilesystemUID(65534)
            switchedIdentity = setFilesystemUID(UInt32.max) == 65534  // an invalid id only reports the current one
            if !switchedIdentity {
                _ = setFilesystemUID(0)
                throw XCTSkip("running as root without CAP_SETUID: chmod 000 cannot make a file unreadable to "
                              + "root, so permission denied cannot be produced here")
            }
        }
        defer { if switchedIdentity { _ = filesystemUIDSetter()?(0) } }
        let error = decodeError(locked)
        XCTAssertEqual(error, .unreadable(file: locked.path, reason: "Permission denied"))
        if let error { assertOneLineNamingFile(error, locked) }
    }

    func testPixelLimitRefusesBeforeAllocating() throws {
        let decoder = ImageDecoder(maxPixels: 1000)
        for input in ["decode/q90_420.jpg", "decode/rgb8.png"] {
            let url = Fixtures.url(input)
            XCTAssertEqual(decodeError(url, decoder: decoder), .tooLarge(file: url.path, width: 61, height: 43, maxPixels: 1000))
        }
    }

    /// Damaged files must give an image or an ImageError: never a crash, never a hang.
    func testMutatedAndCutFilesNeverCrash() throws {
        var generator = SplitMix64(seed: 20261123)
        var outcomes = [String: Int]()
        for input in ["decode/q90_420.jpg", "decode/progressive_420.jpg", "decode/palette_trns.png",
                      "decode/rgba16.png", "exif/orientation5_be.jpg"] {
            let original = [UInt8](try Data(contentsOf: Fixtures.url(input)))
            for trial in 0..<60 {
                var bytes = original
                if trial % 3 == 0 {
                    bytes.removeSubrange(Int(generator.next() % UInt64(bytes.count))...)
                } else {
                    for _ in 0..<(1 + trial % 5) {
                        bytes[Int(generator.next() % UInt64(bytes.count))] = UInt8(truncatingIfNeeded: generator.next())
                    }
                }
                let started = Date()
                let outcome: String
                do {
                    let image = try ImageDecoder().decode(Data(bytes), name: "\(input)#\(trial)")
                    XCTAssertEqual(image.pixels.count, image.width * image.height * 3)
                    outcome = "decoded"
                } catch {
                    XCTAssertFalse(error.description.isEmpty)
                    outcome = kind(error)
                }
                outcomes[outcome, default: 0] += 1
                XCTAssertLessThan(Date().timeIntervalSince(started), 5, "\(input) trial \(trial) took too long")
            }
        }
        print("FUZZ outcomes: \(outcomes.sorted { $0.key < $1.key })")
    }

    private typealias SetFilesystemUID = @convention(c) (UInt32) -> Int32

    private func filesystemUIDSetter() -> SetFilesystemUID? {
        guard let symbol = dlsym(dlopen(nil, RTLD_NOW), "setfsuid") else { return nil }
        return unsafeBitCast(symbol, to: SetFilesystemUID.self)
    }

    private func temporaryFolder() throws -> URL {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-media-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: folder) }
        return folder
    }
}
