import Foundation
import XCTest
import SluiceModels
import SluiceTensor
import SluiceTestSupport

/// Checkpoint readers against fixtures written by scripts/reference/checkpoints.py: one small state
/// dict (float32, float16, bfloat16, float64, int32/int64, a transposed view, a window into another
/// tensor's storage, a 0-d tensor) in every format, and the exact float32 values it must load as.
final class CheckpointTests: XCTestCase {
    static let directory = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!
        .appendingPathComponent("checkpoints")

    struct ExpectedManifest: Decodable {
        let keys: [String]
        let torch_dtypes: [String: String]
        let numpy_dtypes: [String: String]
        let safetensors_metadata: [String: String]
    }

    static func fixture(_ name: String) -> URL { directory.appendingPathComponent(name) }

    func manifest() throws -> ExpectedManifest {
        try JSONDecoder().decode(ExpectedManifest.self, from: Data(contentsOf: Self.fixture("expected.json")))
    }

    func expected() throws -> StateDict { try Checkpoint.load(Self.fixture("expected.npz")) }

    /// Same keys in the same order, and every tensor bit-for-bit equal (shape and values).
    func assertMatchesExpected(_ loaded: StateDict, dtypes: [String: String], file: StaticString = #filePath,
                               line: UInt = #line) throws {
        let manifest = try manifest()
        let expected = try expected()
        XCTAssertEqual(loaded.keys, manifest.keys, file: file, line: line)
        for key in manifest.keys {
            let tensor = try loaded.tensor(key)
            let reference = try expected.tensor(key)
            XCTAssertEqual(tensor.shape, reference.shape, "\(key) shape", file: file, line: line)
            XCTAssertEqual(tensor.data, reference.data, "\(key) values", file: file, line: line)
            XCTAssertEqual(loaded.dtypes[key]?.rawValue, dtypes[key], "\(key) dtype", file: file, line: line)
        }
    }

    // MARK: - Every format loads exactly

    /// Default pickle protocol 2, and protocol 4 (FRAME, MEMOIZE, STACK_GLOBAL, SHORT_BINUNICODE).
    func testTorchZipFormatLoadsExactly() throws {
        for name in ["zip.pth", "zip_protocol4.pth"] {
            let url = Self.fixture(name)
            XCTAssertEqual(try Checkpoint.format(of: url), .torchZip, name)
            let loaded = try Checkpoint.load(url)
            try assertMatchesExpected(loaded, dtypes: try manifest().torch_dtypes)
            XCTAssertEqual(loaded.source, url)
            XCTAssertEqual(loaded.notes, [], name)
        }
    }

    /// Protocol 2, and protocol 5 where every pickle of the stream starts with a FRAME.
    func testTorchLegacyFormatLoadsExactly() throws {
        for name in ["legacy.pth", "legacy_protocol5.pth"] {
            let url = Self.fixture(name)
            XCTAssertEqual(try Checkpoint.format(of: url), .torchLegacy, name)
            try assertMatchesExpected(try Checkpoint.load(url), dtypes: try manifest().torch_dtypes)
        }
    }

    func testSafetensorsLoadsExactlyWithMetadata() throws {
        let url = Self.fixture("tiny.safetensors")
        XCTAssertEqual(try Checkpoint.format(of: url), .safetensors)
        let loaded = try Checkpoint.load(url)
        try assertMatchesExpected(loaded, dtypes: try manifest().torch_dtypes)
        XCTAssertEqual(loaded.metadata, try manifest().safetensors_metadata)
    }

    func testNPZStoredAndCompressedLoadExactly() throws {
        for name in ["stored.npz", "compressed.npz"] {
            let url = Self.fixture(name)
            XCTAssertEqual(try Checkpoint.format(of: url), .npz, name)
            try assertMatchesExpected(try Checkpoint.load(url), dtypes: try manifest().numpy_dtypes)
        }
    }

    func testSingleNPYLoadsUnderItsFileName() throws {
        let url = Self.fixture("single.npy")
        XCTAssertEqual(try Checkpoint.format(of: url), .npy)
        let loaded = try Checkpoint.load(url)
        XCTAssertEqual(loaded.keys, ["single"])
        XCTAssertEqual(try loaded.tensor("single"), try expected().tensor("conv.weight"))
        // Column-major data comes out in row-major order.
        let fortran = try Checkpoint.load(Self.fixture("fortran.npy"))
        XCTAssertEqual(try fortran.tensor("fortran"), try expected().tensor("fc.weight"))
    }

    /// Independent of expected.npz: values known from how the script built them.
    func testViewsSharedStorageAndConversionsHaveKnownValues() throws {
        for name in ["zip.pth", "legacy.pth", "zip_protocol4.pth", "legacy_protocol5.pth"] {
            let loaded = try Checkpoint.load(Self.fixture(name))
            // shared.base = arange(24).reshape(4, 6) * 0.25 - 2; shared.window = base[1:3, 2:5]
            let window = try loaded.tensor("shared.window")
            XCTAssertEqual(window.shape, [2, 3], name)
            XCTAssertEqual(window.data, [0, 0.25, 0.5, 1.5, 1.75, 2.0], name)
            XCTAssertEqual(try loaded.tensor("shared.base").data, (0..<24).map { Float($0) * 0.25 - 2 }, name)
            // fc.weight_t = fc.weight.t(): a non-contiguous view of the same storage
            let weight = try loaded.tensor("fc.weight"), transposed = try loaded.tensor("fc.weight_t")
            XCTAssertEqual(weight.shape, [5, 4], name)
            XCTAssertEqual(transposed, weight.permuted([1, 0]), name)
            // int64 0-d buffer, int32 vector, 0-d float
            let tracked = try loaded.tensor("bn.num_batches_tracked")
            XCTAssertEqual(tracked.shape, [], name)
            XCTAssertEqual(tracked.data, [1234567], name)
            XCTAssertEqual(loaded.dtypes["bn.num_batches_tracked"], .i64, name)
            XCTAssertEqual(try loaded.tensor("int32.index").data, [3, -1, 40000, 7], name)
            XCTAssertEqual(try loaded.tensor("scalar.temperature"), Tensor(shape: [], data: [0.5]), name)
            XCTAssertEqual(loaded.dtypes["bf16.weight"], .bf16, name)
            XCTAssertEqual(loaded.dtypes["half.weight"], .f16, name)
        }
    }

    // MARK: - Nested training checkpoints

    func testNestedCheckpointsUnwrapAndSkipNonTensors() throws {
        let manifest = try manifest()
        for (name, wrapper) in [("wrapped_model.pth", "model"), ("wrapped_state_dict.pth", "state_dict")] {
            let loaded = try Checkpoint.load(Self.fixture(name))
            try assertMatchesExpected(loaded, dtypes: manifest.torch_dtypes)
            XCTAssertTrue(loaded.notes.contains { $0.contains("'\(wrapper)'") }, "\(name): \(loaded.notes)")
            XCTAssertTrue(loaded.notes.contains { $0.contains("meta.version (int)") && $0.contains("meta.name (str)") },
                          "\(name): \(loaded.notes)")
        }
    }

    // MARK: - Errors

    func testTruncatedFilesGiveOneLineTruncationErrors() throws {
        let names = ["zip.pth", "legacy.pth", "legacy_pickle.pth", "tiny.safetensors",
                     "safetensors_header.safetensors", "stored.npz"]
        for name in names {
            let url = Self.directory.appendingPathComponent("truncated").appendingPathComponent(name)
            XCTAssertThrowsError(try Checkpoint.load(url), name) { error in
                guard let error = error as? CheckpointError, case .truncated = error else {
                    return XCTFail("\(name): expected CheckpointError.truncated, got \(error)")
                }
                XCTAssertTrue(error.description.contains(url.path), error.description)
                XCTAssertFalse(error.description.contains("\n"), error.description)
            }
        }
    }

    func testTextFileIsAnUnknownFormat() {
        let url = Self.fixture("not_a_checkpoint.txt")
        XCTAssertThrowsError(try Checkpoint.load(url)) { error in
            guard let error = error as? CheckpointError, case .unknownFormat = error else {
                return XCTFail("expected CheckpointError.unknownFormat, got \(error)")
            }
            XCTAssertTrue(error.description.contains("not_a_checkpoint.txt"), error.description)
            XCTAssertTrue(error.description.contains("looks like text"), error.description)
        }
    }

    func testMissingAndEmptyFiles() throws {
        let missing = Self.directory.appendingPathComponent("does_not_exist.pth")
        XCTAssertThrowsError(try Checkpoint.load(missing)) { error in
            guard case .unreadable? = error as? CheckpointError else { return XCTFail("got \(error)") }
        }
        let empty = try temporaryFile("empty.pth", contents: Data())
        XCTAssertThrowsError(try Checkpoint.load(empty)) { error in
            guard case .truncated? = error as? CheckpointError else { return XCTFail("got \(error)") }
        }
    }

    func testMissingKeyErrorSuggestsSimilarKeys() throws {
        let loaded = try Checkpoint.load(Self.fixture("zip.pth"))
        XCTAssertThrowsError(try loaded.tensor("fc.weigth")) { error in
            guard let error = error as? CheckpointError, case .missingKey(let key, _, let available, let similar) = error else {
                return XCTFail("got \(error)")
            }
            XCTAssertEqual(key, "fc.weigth")
            XCTAssertEqual(available, 18)
            XCTAssertEqual(similar, ["fc.weight", "fc.weight_t"])
            XCTAssertTrue(error.description.contains("zip.pth"), error.description)
        }
        XCTAssertThrowsError(try loaded.tensor("module.conv.weight")) { error in
            guard case .missingKey(_, _, _, let similar)? = error as? CheckpointError else { return XCTFail("got \(error)") }
            XCTAssertEqual(similar, ["conv.weight"])
        }
    }

    /// Legacy container around hand-written object pickles: magic number, protocol 1001, empty sys info.
    func legacyFile(_ name: String, objectPickle: [UInt8]) throws -> URL {
        var bytes: [UInt8] = [0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e]
        bytes += [0x80, 0x02, 0x4d, 0xe9, 0x03, 0x2e]  // 1001
        bytes += [0x80, 0x02, 0x7d, 0x2e]              // {}
        return try temporaryFile(name, contents: Data(bytes + objectPickle))
    }

    func testUnknownOpcodeNamesOpcodeAndOffset() throws {
        let url = try legacyFile("bad_opcode.pth", objectPickle: [0x80, 0x02, 0x7d, 0xff])
        XCTAssertThrowsError(try Checkpoint.load(url)) { error in
            guard let error = error as? CheckpointError, case .unknownOpcode(_, let opcode, let offset) = error else {
                return XCTFail("got \(error)")
            }
            XCTAssertEqual(opcode, 0xff)
            XCTAssertEqual(offset, 28)
            XCTAssertTrue(error.description.contains("0xff") && error.description.contains("byte 28"), error.description)
        }
    }

    func testUnknownGlobalsBecomeOpaqueValuesNotCrashes() throws {
        // {'x': foo.Bar()}, then an empty storage list. Never executed; reported as a dict without tensors.
        let pickle: [UInt8] = [0x80, 0x02, 0x7d, 0x58, 1, 0, 0, 0, UInt8(ascii: "x"), 0x63]
            + Array("foo\nBar\n".utf8) + [0x29, 0x52, 0x73, 0x2e]
        let url = try legacyFile("opaque.pth", objectPickle: pickle + [0x80, 0x02, 0x5d, 0x2e])  // no storages
        XCTAssertThrowsError(try Checkpoint.load(url)) { error in
            guard let error = error as? CheckpointError, case .noTensors = error else { return XCTFail("got \(error)") }
            XCTAssertTrue(error.description.contains("x (foo.Bar object)"), error.description)
        }
    }

    /// Old torch versions saved storage views: the persistent id's 6th field is (view_key, offset, size)
    /// into the root storage. Hand-built: {'v': tensor over view ('cpu', 1, 2) of root storage [1, 2, 3, 4]}.
    func testLegacyStorageViewsAreResolved() throws {
        func unicode(_ text: String) -> [UInt8] {
            let utf8 = Array(text.utf8)
            return [0x58] + withUnsafeBytes(of: UInt32(utf8.count).littleEndian, Array.init) + utf8
        }
        func global(_ module: String, _ name: String) -> [UInt8] { [0x63] + Array("\(module)\n\(name)\n".utf8) }
        // Memo indices above the remaining byte count (LONG_BINPUT 70000 / 300, LONG_BINGET 300) must work too.
        var object: [UInt8] = [0x80, 0x02, 0x7d, 0x72, 0x70, 0x11, 0x01, 0x00] + unicode("v")
        object += global("torch._utils", "_rebuild_tensor_v2") + [0x28]
        object += [0x28] + unicode("storage") + global("torch", "FloatStorage") + unicode("root")
        object += unicode("cpu") + [0x72, 0x2c, 0x01, 0x00, 0x00]
        object += [0x4b, 4] + [0x28, 0x6a, 0x2c, 0x01, 0x00, 0x00] + [0x4b, 1, 0x4b, 2, 0x74] + [0x74, 0x51]  // pid, BINPERSID
        object += [0x4b, 0, 0x4b, 2, 0x85, 0x4b, 1, 0x85, 0x89] + global("collections", "OrderedDict") + [0x29, 0x52]
        object += [0x74, 0x52, 0x73, 0x2e]  // args tuple, REDUCE, SETITEM, STOP
        let storageKeys: [UInt8] = [0x80, 0x02, 0x5d, 0x28] + unicode("root") + [0x65, 0x2e]
        var storage = withUnsafeBytes(of: Int64(4).littleEndian, Array.init)
        for value: Float in [1, 2, 3, 4] { storage += withUnsafeBytes(of: value.bitPattern.littleEndian, Array.init) }
        let url = try legacyFile("view.pth", objectPickle: object + storageKeys + storage)
        let loaded = try Checkpoint.load(url)
        XCTAssertEqual(loaded.keys, ["v"])
        XCTAssertEqual(try loaded.tensor("v"), Tensor(shape: [2], data: [2, 3]))
    }

    // MARK: - Writing

    func testSafetensorsWriterRoundTrips() throws {
        var original = StateDict()
        original.set(Tensor(shape: [2, 3], data: [1, -2, 3.5, .pi, -0.0, 1e-30]), forKey: "layer.0.weight")
        original.set(Tensor(shape: [], data: [42]), forKey: "scalar")
        original.set(Tensor(shape: [0, 4], data: []), forKey: "empty")
        original.set(Tensor(shape: [3], data: [7, 8, 9]), forKey: "quote\"back\\slash ünïcode\n")
        let url = try temporaryFile("written.safetensors", contents: nil)
        let metadata = ["format": "pt", "note": "line\nbreak \"quoted\""]
        try Safetensors.write(original, metadata: metadata, to: url)

        let bytes = try Data(contentsOf: url)
        let headerLength = bytes.prefix(8).reversed().reduce(0) { $0 << 8 | Int($1) }
        XCTAssertEqual((8 + headerLength) % 8, 0, "data section must start 8-byte aligned")
        XCTAssertEqual(bytes.count, 8 + headerLength + (6 + 1 + 0 + 3) * 4)

        let loaded = try Checkpoint.load(url)
        XCTAssertEqual(loaded.keys, original.keys)
        XCTAssertEqual(loaded.tensors, original.tensors)
        XCTAssertEqual(loaded.metadata, metadata)
        XCTAssertTrue(loaded.dtypes.values.allSatisfy { $0 == .f32 })

        // Round-trip of the whole fixture state dict, written from the ordered-pairs overload.
        let fixture = try Checkpoint.load(Self.fixture("legacy.pth"))
        try Safetensors.write(fixture.orderedTensors.map { ($0.key, $0.tensor) }, to: url)
        let reread = try Checkpoint.load(url)
        XCTAssertEqual(reread.keys, fixture.keys)
        XCTAssertEqual(reread.tensors, fixture.tensors)
        XCTAssertTrue(reread.metadata.isEmpty)
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: url.deletingLastPathComponent().path)
            .filter { $0.hasSuffix(".partial") }
        XCTAssertEqual(leftovers, [])
    }

    func testWriterRejectsDuplicateKeys() throws {
        let url = try temporaryFile("duplicate.safetensors", contents: nil)
        let tensor = Tensor(shape: [1], data: [1])
        XCTAssertThrowsError(try Safetensors.write([("a", tensor), ("a", tensor)], to: url)) { error in
            guard case .duplicateKey("a", _)? = error as? CheckpointError else { return XCTFail("got \(error)") }
        }
    }

    // MARK: - StateDict helpers

    func testPrefixRemovalAndRenaming() throws {
        let one = Tensor(shape: [1], data: [1]), two = Tensor(shape: [1], data: [2]), three = Tensor(shape: [1], data: [3])
        let dict = StateDict([("backbone.a", one), ("backbone.b", two), ("head.c", three)])

        let stripped = try dict.removingPrefix("backbone.")
        XCTAssertEqual(stripped.keys, ["a", "b", "head.c"])
        XCTAssertEqual(stripped["b"], two)
        let selected = try dict.removingPrefix("backbone.", keepingUnprefixed: false)
        XCTAssertEqual(selected.keys, ["a", "b"])

        let renamed = try dict.renamingKeys(["head.c": "classifier.c"])
        XCTAssertEqual(renamed.keys, ["backbone.a", "backbone.b", "classifier.c"])
        XCTAssertEqual(renamed["classifier.c"], three)

        XCTAssertThrowsError(try dict.renamingKeys(["head.c": "backbone.a"])) { error in
            guard case .duplicateKey("backbone.a", _)? = error as? CheckpointError else { return XCTFail("got \(error)") }
        }
        var edited = dict
        edited.set(three, forKey: "backbone.a")
        XCTAssertEqual(edited.keys, dict.keys, "replacing keeps the position")
        XCTAssertEqual(edited.removeValue(forKey: "backbone.b"), two)
        XCTAssertEqual(edited.keys, ["backbone.a", "head.c"])
    }

    // MARK: - The real EfficientNet-Lite0 checkpoint (legacy format, 18 MB)

    func testRealEfficientNetLite0Checkpoint() throws {
        let url = try TestResources.lite0Weights()
        XCTAssertEqual(try Checkpoint.format(of: url), .torchLegacy)
        let start = Date()
        let weights = try Checkpoint.load(url)
        let seconds = Date().timeIntervalSince(start)
        print("EfficientNet-Lite0 checkpoint loaded in \(String(format: "%.3f", seconds)) s")

        // Reference numbers from scripts/reference/checkpoints.py (torch 1.13).
        XCTAssertEqual(weights.count, 296)
        XCTAssertEqual(weights.keys.filter { $0.hasSuffix("num_batches_tracked") }.count, 49)
        XCTAssertEqual(weights.dtypes.values.filter { $0 == .i64 }.count, 49)
        let stem = try weights.tensor("_conv_stem.weight")
        let fcWeight = try weights.tensor("_fc.weight"), fcBias = try weights.tensor("_fc.bias")
        XCTAssertEqual(stem.shape, [32, 3, 3, 3])
        XCTAssertEqual(fcWeight.shape, [1000, 1280])
        XCTAssertEqual(fcBias.shape, [1000])

        // _conv_stem.weight is stored with strides (1, 32, 288, 96): exact values at known positions.
        func stemValue(_ o: Int, _ i: Int, _ h: Int, _ w: Int) -> Float { stem.data[((o * 3 + i) * 3 + h) * 3 + w] }
        XCTAssertEqual(stemValue(0, 0, 0, 0), Float(-1.1103360652923584))
        XCTAssertEqual(stemValue(31, 2, 2, 1), Float(1.4901161193847656e-08))
        XCTAssertEqual(stemValue(5, 1, 0, 2), Float(-0.00487905740737915))
        XCTAssertEqual(fcWeight.data[999 * 1280 + 1279], Float(0.04085797071456909))
        XCTAssertEqual(fcBias.data[0], Float(0.032053910195827484))

        func sum(_ tensor: Tensor) -> Double { tensor.data.reduce(0) { $0 + Double($1) } }
        func weightedChecksum(_ tensor: Tensor) -> Double {
            var total = 0.0
            for (index, value) in tensor.data.enumerated() { total += Double(value) * Double(index % 7 + 1) }
            return total
        }
        XCTAssertEqual(sum(fcBias), -0.049816973, accuracy: 1e-8)
        XCTAssertEqual(sum(stem), -26.811376611, accuracy: 1e-7)
        XCTAssertEqual(fcWeight.data.reduce(0) { $0 + Double($1) * Double($1) }, 5305.417029641, accuracy: 1e-5)
        XCTAssertEqual(weightedChecksum(stem), -108.162336409, accuracy: 1e-7)
        // Over every tensor, position-weighted: catches any stride mix-up in the 50 non-contiguous ones.
        let total = weights.orderedTensors.reduce(0.0) { $0 + weightedChecksum($1.tensor) }
        XCTAssertEqual(total, 1692595.788744, accuracy: 1e-3)
    }

    // MARK: - Helpers

    func temporaryFile(_ name: String, contents: Data?) throws -> URL {
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("sluice-checkpoint-tests-\(ProcessInfo.processInfo.processIdentifier)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let url = directory.appendingPathComponent(name)
        try? FileManager.default.removeItem(at: url)
        if let contents { try contents.write(to: url) }
        return url
    }
}
