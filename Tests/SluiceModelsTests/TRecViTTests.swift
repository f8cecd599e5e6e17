import Foundation
import XCTest
import SluiceModels
import SluiceTensor
import SluiceTestSupport

/// Parity of TRecViT with the official forward (scripts/reference/trecvit.py, written from
/// google-deepmind/trecvit and the recurrentgemma layers, over the official Flax parameter tree).
/// Weights and videos come from the recipe the script and `TRecViTRecipe` share, so only outputs are
/// committed; one reduced case loads a real official-format `.npz` instead. Swift steps every video one
/// frame at a time through a session, so each case checks streaming against the official parallel-in-time
/// forward frame for frame (the clip's logits so far), each clip's logits and the clip average.
final class TRecViTTests: XCTestCase {
    static let fixtures = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!
        .appendingPathComponent("trecvit")
    static let script = "/usr/bin/python3 scripts/reference/trecvit.py"

    struct Case {
        let name: String
        let configuration: TRecViTConfiguration
        let videoShape: [Int]
        let files: [String: String]
    }

    static func fixture(_ name: String, file: StaticString = #filePath, line: UInt = #line) throws -> URL {
        let url = fixtures.appendingPathComponent(name)
        guard FileManager.default.fileExists(atPath: url.path) else {
            XCTFail("missing TRecViT fixture \(name): regenerate with `\(script)`", file: file, line: line)
            throw XCTSkip("missing fixture \(name)")
        }
        return url
    }

    static func cases() throws -> [Case] {
        let manifest = try JSONSerialization.jsonObject(with: Data(contentsOf: fixture("manifest.json"))) as! [String: Any]
        return try (manifest["cases"] as! [[String: Any]]).map { item in
            var configuration = try JSONDecoder().decode(TRecViTConfiguration.self,
                from: JSONSerialization.data(withJSONObject: item["configuration"]!))
            configuration.framesPerClip = item["frames_per_clip"] as! Int
            return Case(name: item["name"] as! String, configuration: configuration,
                        videoShape: item["video_shape"] as! [Int], files: item["files"] as! [String: String])
        }
    }

    static func namedCase(_ name: String) throws -> Case {
        guard let found = try cases().first(where: { $0.name == name }) else {
            XCTFail("manifest.json has no case \(name): regenerate with `\(script)`")
            throw XCTSkip("no case \(name)")
        }
        return found
    }

    static func model(_ configuration: TRecViTConfiguration) throws -> TRecViT {
        let card = ModelRegistry.trecViTCard(name: "trecvit_test", configuration: configuration)
        let loaded = try card.load(stateDict: TRecViTRecipe.stateDict(card.parameterShapes))
        guard case .streamingVideo(let model as TRecViT) = loaded else { throw XCTSkip("not a TRecViT") }
        return model
    }

    func checkParity(_ name: String, threads: [Int]) throws {
        let item = try Self.namedCase(name)
        let model = try Self.model(item.configuration)
        let video = TRecViTRecipe.video(item.videoShape)
        try checkParity(item, model: model, video: video, threads: threads)
    }

    func checkParity(_ item: Case, model: TRecViT, video: Tensor, threads: [Int]) throws {
        defer { Parallel.configure(threads: nil) }
        for count in threads {
            Parallel.configure(threads: count)
            let (logits, streaming, clips) = try model.classify(videos: video)
            for (part, actual) in [("logits", logits), ("streaming", streaming), ("clips", clips)] {
                let expected = try NPY.read(contentsOf: Self.fixture(item.files[part]!))
                XCTAssertEqual(actual.shape, expected.shape, "\(item.name) \(part)")
                let error = Tensor.maxRelativeError(actual, expected)
                print("\(item.name) \(part) parity (\(count) thread(s)): max relative error \(error)")
                XCTAssertLessThanOrEqual(error, 1e-4, "\(item.name) \(part), \(count) thread(s)")
            }
        }
    }

    func testReducedTwoClipsResetAtTheSecondClip() throws { try checkParity("reduced_two_clips", threads: [1, 2]) }

    /// 6 frames with frames_per_clip 4 are one clip of 6, as the official T // frames_per_clip says.
    func testReducedShortVideoIsOneClip() throws { try checkParity("reduced_one_clip", threads: [1]) }

    /// 40x50 frames: the tokenizer's VALID conv drops the last 8 rows and 2 columns.
    func testReducedFramesWithARemainderOfPixels() throws { try checkParity("reduced_remainder_pixels", threads: [1]) }

    /// The reduced case again, from an official-format .npz ('/'-joined Flax keys) through the loader.
    func testReducedCheckpointLoadsUnchanged() throws {
        let item = try Self.namedCase("reduced_two_clips")
        let card = ModelRegistry.trecViTCard(name: "trecvit_test", configuration: item.configuration)
        let url = try Self.fixture("reduced_checkpoint.npz")
        guard case .streamingVideo(let model as TRecViT) = try card.load(stateDict: Checkpoint.load(url)) else {
            return XCTFail("not a TRecViT")
        }
        try checkParity(item, model: model, video: TRecViTRecipe.video(item.videoShape), threads: [1])
    }

    /// Full-width B (the released size) with recipe weights, 4 frames (one clip) and 8 (two clips of 4).
    func testFullWidthB() throws {
        try checkParity("full_b_4_frames", threads: [1, 2])
        try checkParity("full_b_8_frames", threads: [2])
    }

    /// Stream mode never resets: its first frames_per_clip frames are clip mode's first clip exactly, and
    /// after that it goes on from the state (so it differs from clip mode, which restarts).
    func testStreamModeMatchesClipModeUntilTheFirstReset() throws {
        let item = try Self.namedCase("reduced_two_clips")
        var configuration = item.configuration
        let clipModel = try Self.model(configuration)
        configuration.mode = .stream
        let streamModel = clipModel.with(configuration)
        let video = TRecViTRecipe.video([1] + item.videoShape.dropFirst())
        let (h, w) = (item.videoShape[2], item.videoShape[3])
        let clipSession = try clipModel.openSession(prompt: .none)
        let streamSession = try streamModel.openSession(prompt: .none)
        var clipEnds: [Int] = []
        for t in 0..<item.videoShape[1] {
            let size = h * w * 3
            let frame = Tensor(shape: [1, h, w, 3], data: Array(video.data[t * size..<(t + 1) * size]))
            guard case .logits(let a, let clipA) = try clipSession.step(frame),
                  case .logits(let b, let clipB) = try streamSession.step(frame) else { return XCTFail("no logits") }
            let difference = zip(a, b).map { abs($0 - $1) }.max()!
            if t < configuration.framesPerClip {
                XCTAssertEqual(a, b, "frame \(t): stream mode differs from clip mode before any reset")
            } else {
                XCTAssertGreaterThan(difference, 1e-3, "frame \(t): stream mode should carry state across the clip boundary")
            }
            XCTAssertEqual(clipA?.frames, clipB?.frames)
            if let clipA { clipEnds.append(t); XCTAssertEqual(clipA.frames, configuration.framesPerClip) }
        }
        XCTAssertEqual(clipEnds, [3, 7])
        XCTAssertNil(clipSession.finish(), "no partial clip after 8 frames of 4")
    }

    /// A video that ends mid-clip reports its partial clip at finish: the mean of the frames it had.
    func testFinishReportsThePartialClip() throws {
        let item = try Self.namedCase("reduced_two_clips")
        let model = try Self.model(item.configuration)
        let session = try model.openSession(prompt: .none)
        let (h, w) = (item.videoShape[2], item.videoShape[3])
        let video = TRecViTRecipe.video([1, 6, h, w, 3])
        var last: [Float] = []
        for t in 0..<6 {
            let size = h * w * 3
            guard case .logits(let logits, _) = try session.step(Tensor(shape: [1, h, w, 3],
                data: Array(video.data[t * size..<(t + 1) * size]))) else { return XCTFail("no logits") }
            last = logits
        }
        let partial = try XCTUnwrap(session.finish())
        XCTAssertEqual(partial.index, 1)
        XCTAssertEqual(partial.frames, 2)
        XCTAssertEqual(partial.logits, last, "the partial clip's logits are its frames so far")
        XCTAssertNil(session.finish())
    }

    func testFramesThatDoNotMakeThePositionalGridAreClearErrors() throws {
        let item = try Self.namedCase("reduced_two_clips")
        let model = try Self.model(item.configuration)
        let session = try model.openSession(prompt: .none)
        XCTAssertThrowsError(try session.step(Tensor(zeros: [1, 8, 8, 3]))) { error in
            XCTAssertEqual("\(error)", "frame 8x8 is smaller than one 16x16 patch")
        }
        XCTAssertThrowsError(try session.step(Tensor(zeros: [1, 64, 64, 3]))) { error in
            XCTAssertEqual("\(error)", "frame 64x64 makes a 4x4 grid of 16x16 patches; the model's positional "
                           + "embedding is for 3x2 (48x32 frames)")
        }
        XCTAssertThrowsError(try model.classify(videos: Tensor(zeros: [6, 32, 48, 3]))) { error in
            XCTAssertEqual("\(error)", "expected videos [N, T, H, W, 3], got [6, 32, 48, 3]")
        }
        var five = item.configuration
        five.framesPerClip = 2
        XCTAssertThrowsError(try model.with(five).classify(videos: Tensor(zeros: [1, 5, 32, 48, 3]))) { error in
            XCTAssertTrue("\(error)".contains("5 frames do not split into 2 equal clips"), "\(error)")
        }
    }

    /// Weights of another variant: every mis-shaped key is named, with the official '/' names.
    func testCheckpointOfAnotherVariantIsRefusedKeyByKey() throws {
        let url = try Self.fixture("reduced_checkpoint.npz")
        let card = try ModelRegistry.card(named: "trecvit_mu")
        XCTAssertThrowsError(try card.load(stateDict: Checkpoint.load(url), source: url.lastPathComponent)) { error in
            let text = "\(error)"
            XCTAssertTrue(text.hasPrefix("reduced_checkpoint.npz: weights do not fit trecvit_mu:"), text)
            XCTAssertTrue(text.contains("looks like a TRecViT of width 32 with 2 layers, which is no registered variant"), text)
            XCTAssertTrue(text.contains("tokenizer/pos_embedding has shape [1, 6, 32], expected [1, 196, 32]"), text)
            XCTAssertTrue(text.contains("unexpected encoder/residualblock_01/temporal_pre_norm/scale"), text)
            XCTAssertTrue(text.contains("decoder/cls_head/kernel has shape [48, 10], expected [3072, 400]"), text)
        }
    }

    /// The registered variants have the official widths, and B the released model's parameter count.
    func testRegisteredVariants() throws {
        let names = ModelRegistry.names.filter { $0.hasPrefix("trecvit_") }
        XCTAssertEqual(names, ["trecvit_mu", "trecvit_ti", "trecvit_s", "trecvit_m", "trecvit_b", "trecvit_l"])
        let b = try ModelRegistry.card(named: "trecvit_b")
        XCTAssertEqual(b.task, .videoClassification)
        XCTAssertEqual(b.labels.labels.count, 400)
        XCTAssertEqual(b.labels.label(213), "petting cat")
        let shapes = b.parameterShapes
        let parameters = shapes.reduce(0) { $0 + $1.1.reduce(1, *) }
        print("trecvit_b: \(shapes.count) tensors, \(parameters) parameters")
        XCTAssertEqual(shapes.first?.0, "tokenizer/embedding/kernel")
        XCTAssertEqual(shapes.first?.1, [1, 16, 16, 3, 768])
        XCTAssertTrue(shapes.contains { $0.0 == "encoder/residualblock_11/recurrent_block/rg_lru/a_gate/w" && $0.1 == [12, 128, 128] })
        XCTAssertTrue(shapes.contains { $0.0 == "encoder/encoderblock_11/MultiHeadDotProductAttention_0/out/kernel" && $0.1 == [12, 64, 768] })
    }

    func testSettingsAreValidated() throws {
        let c = TRecViTConfiguration.variant("B")!
        XCTAssertEqual(try c.setting("frames_per_clip", to: "4").framesPerClip, 4)
        XCTAssertEqual(try c.setting("mode", to: "stream").mode, .stream)
        XCTAssertThrowsError(try c.setting("frames", to: "4")) { error in
            XCTAssertEqual("\(error)", "unknown setting 'frames' (TRecViT takes frames_per_clip, mode)")
        }
        XCTAssertThrowsError(try c.setting("frames_per_clip", to: "0"))
        XCTAssertThrowsError(try c.setting("mode", to: "batch"))
    }
}

/// The deterministic weights and videos of scripts/reference/trecvit.py (see its docstring and
/// `ParityRecipe`).
enum TRecViTRecipe {
    static func stateDict(_ shapes: [(String, [Int])]) -> StateDict {
        StateDict(shapes.map { ($0.0, Tensor(shape: $0.1, data: ParityRecipe.trecvitValues($0.0, $0.1))) })
    }

    static func video(_ shape: [Int]) -> Tensor {
        Tensor(shape: shape, data: ParityRecipe.videoValues(count: shape.reduce(1, *)))
    }
}
