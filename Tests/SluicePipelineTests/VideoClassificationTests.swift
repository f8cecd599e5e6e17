import Foundation
import XCTest
import SluiceTestSupport
import SluiceMedia
import SluiceModels
import SluicePipeline
import SluiceTensor

/// A video classifier (a small TRecViT) through the pipeline and the command line: a record per frame,
/// one per clip after the frame that completes it (and one for a clip the video's end cuts short),
/// damaged and tiny videos, pipeline settings, and `sluice infer` / `classify-video` against the
/// reference (scripts/reference/trecvit.py).
final class VideoClassificationTests: XCTestCase {
    let dog = TestResources.repository.appendingPathComponent("assets/videos/dog.mp4").path

    /// width 16, one layer, 2x2 patches of 16 (32x32 frames), 4 frames per clip, recipe weights.
    static func smallModel(framesPerClip: Int = 4) throws -> (ModelCard, LoadedModel) {
        let configuration = TRecViTConfiguration(width: 16, depth: 1, mlpDim: 32, numHeads: 2, lruWidth: 32, repSize: 24,
                                                 numClasses: 10, gridHeight: 2, gridWidth: 2, framesPerClip: framesPerClip)
        let card = ModelRegistry.trecViTCard(name: "trecvit_small_test", configuration: configuration)
        let weights = card.parameterShapes.map { ($0.0, Tensor(shape: $0.1, data: ParityRecipe.trecvitValues($0.0, $0.1))) }
        return (card, try card.load(stateDict: StateDict(weights)))
    }

    /// trecvit_mu with the reference's recipe weights, written as FOLDER/trecvit_mu.safetensors.
    static func muWeights(in folder: URL) throws -> URL {
        let card = try ModelRegistry.card(named: "trecvit_mu")
        let weights = folder.appendingPathComponent("trecvit_mu.safetensors")
        try Safetensors.write(card.parameterShapes.map { ($0.0, Tensor(shape: $0.1, data: ParityRecipe.trecvitValues($0.0, $0.1))) },
                              to: weights)
        return weights
    }

    func run(_ items: [InputItem], sampling: VideoSampling, framesPerClip: Int = 4, overlays: String? = nil)
        throws -> (PipelineExecutor.Summary, CollectingSink) {
        let (card, loaded) = try Self.smallModel(framesPerClip: framesPerClip)
        let plan = try PipelinePlan(card: card, loaded: loaded, media: .video(sampling),
                                    postprocessing: Postprocessing(topK: 3), overlayFolder: overlays)
        let sink = CollectingSink()
        let summary = try PipelineExecutor(plan: plan, options: .init(maxBatch: 1, maxWait: 0, decoders: 2)).run(items, sink: sink)
        return (summary, sink)
    }

    func temporaryFolder() throws -> URL {
        let folder = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("sluice-video-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: folder) }
        return folder
    }

    /// dog.mp4 (4.004 s) at 2.5 fps is 11 frames: clips of 4 end at frames 4 and 8, the last 3 make a short clip.
    func testAClipRecordFollowsTheFrameThatCompletesIt() throws {
        let (summary, sink) = try run([InputItem(path: dog), InputItem(path: dog)], sampling: .fps(2.5))
        XCTAssertEqual(summary.frames, 22, "clip records are not frames")
        for item in sink.items {
            let records = item.records
            XCTAssertTrue(records.allSatisfy { $0.error == nil && $0.topK?.count == 3 })
            let kinds = records.map { $0.clip == nil ? "f" : "c" }.joined()
            XCTAssertEqual(kinds, "ffffcffffcfffc")
            let clips = records.compactMap(\.clip)
            XCTAssertEqual(clips.map(\.index), [0, 1, 2])
            XCTAssertEqual(clips.map(\.frames), [4, 4, 3])
            let frames = records.filter { $0.clip == nil }
            XCTAssertEqual(clips[0].firstFrame, frames[0].frameIndex)
            XCTAssertEqual(clips[0].lastFrame, frames[3].frameIndex)
            XCTAssertEqual(clips[1].firstPTS, frames[4].pts)
            XCTAssertEqual(clips[2].lastPTS, frames[10].pts)
            // A clip's prediction is its last frame's (the clip so far, complete).
            for (position, record) in records.enumerated() where record.clip != nil {
                XCTAssertEqual(record.topK, records[position - 1].topK)
            }
        }
        XCTAssertEqual(sink.items[0].records, sink.items[1].records, "each video gets its own session from the start")
    }

    /// Frames before the damage keep their records (and the clip they make), then the error.
    func testADamagedVideoKeepsItsFramesAndClipsAndEndsWithTheError() throws {
        let file = TestResources.repository.appendingPathComponent("Tests/SluiceMediaTests/Fixtures/video/broken/decord_corrupted.mp4")
        let (summary, sink) = try run([InputItem(path: file.path), InputItem(path: dog)], sampling: .everyNth(10),
                                      framesPerClip: 2)
        let records = sink.items[0].records
        let frames = records.filter { $0.frameIndex != nil }
        XCTAssertGreaterThanOrEqual(frames.count, 2)
        XCTAssertTrue(records.dropLast().allSatisfy { $0.error == nil })
        XCTAssertGreaterThanOrEqual(records.filter { $0.clip != nil }.count, 1)
        XCTAssertTrue(records.last!.error?.contains("partial") ?? false, records.last!.error ?? "no error")
        XCTAssertEqual(summary.failures, 1)
        XCTAssertTrue(sink.items[1].records.allSatisfy { $0.error == nil }, "the next video goes on")
    }

    func testAVideoSmallerThanOnePatchIsRefusedWithoutUpscaling() throws {
        let folder = try temporaryFolder()
        let tiny = folder.appendingPathComponent("tiny.mp4").path
        let ffmpeg = Process()
        ffmpeg.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        ffmpeg.arguments = ["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=8x8:rate=5", "-t", "1",
                            "-c:v", "mpeg4", tiny]
        try ffmpeg.run()
        ffmpeg.waitUntilExit()
        guard ffmpeg.terminationStatus == 0 else { throw TestResources.missing("ffmpeg could not write an 8x8 video") }
        let (summary, sink) = try run([InputItem(path: tiny), InputItem(path: dog)], sampling: .all)
        XCTAssertEqual(sink.items[0].records.count, 1)
        XCTAssertEqual(sink.items[0].records[0].error,
                       "\(tiny): frames are 8x8, smaller than the 16x16 pixels (one patch) the model needs; refusing to upscale them")
        XCTAssertEqual(summary.failures, 1)
        XCTAssertTrue(sink.items[1].records.allSatisfy { $0.error == nil })
    }

    /// The overlay shows the current top 3 of each frame, and a clip record adds no frame to it.
    func testOverlayHasOneFramePerSampledFrame() throws {
        let folder = try temporaryFolder()
        _ = try run([InputItem(path: dog)], sampling: .fps(2.5), overlays: folder.path)
        let overlay = try VideoReader(path: OverlaySink.path(for: dog, in: folder.path))
        XCTAssertEqual(overlay.frames(.all).map(\.pts).count, 11)
    }

    func testPipelineSettingsForVideoClassifiers() throws {
        let yaml = """
            name: clips
            source: { video: clip.mp4, sample: { fps: 2 } }
            stages:
              - model: trecvit_b
                frames_per_clip: 8
                mode: stream
            sink: { jsonl: out.jsonl }
            """
        let definition = try PipelineDefinition.parse(yaml, file: "clips.yaml", baseDirectory: URL(fileURLWithPath: "/tmp"))
        XCTAssertEqual(definition.model.framesPerClip, 8)
        XCTAssertEqual(definition.model.clipMode, .stream)
        let bad = yaml.replacingOccurrences(of: "mode: stream", with: "mode: slide")
        XCTAssertThrowsError(try PipelineDefinition.parse(bad, file: "clips.yaml", baseDirectory: URL(fileURLWithPath: "/tmp"))) { error in
            XCTAssertTrue("\(error)".contains("clips.yaml:6:11: 'mode' must be clip"), "\(error)")
        }
        let classifier = yaml.replacingOccurrences(of: "trecvit_b", with: "efficientnet_lite0")
            .replacingOccurrences(of: "    mode: stream\n", with: "")
        XCTAssertThrowsError(try PipelineDefinition.parse(classifier, file: "clips.yaml", baseDirectory: URL(fileURLWithPath: "/tmp"))) { error in
            XCTAssertTrue("\(error)".contains("'frames_per_clip' applies to video classifiers"), "\(error)")
        }
    }

    /// trecvit_mu with the reference's recipe weights: `sluice infer` on videos [1, 4, 224, 224, 3] with
    /// two clips of 2 matches scripts/reference/trecvit.py; a wrong --set key and a wrong rank are one line.
    func testInferOnVideosMatchesTheReference() throws {
        let folder = try temporaryFolder()
        let weights = try Self.muWeights(in: folder)
        let input = folder.appendingPathComponent("video.npy"), output = folder.appendingPathComponent("logits.npy")
        try NPY.write(Tensor(shape: [1, 4, 224, 224, 3], data: ParityRecipe.videoValues(count: 4 * 224 * 224 * 3)), to: input)
        let run = try SluiceCLI.run(["infer", "--model", "trecvit_mu", "--weights", weights.path, "--input", input.path,
                                     "--output", output.path, "--set", "frames_per_clip=2"])
        XCTAssertEqual(run.status, 0, run.stderr)
        let expected = try NPY.read(contentsOf: TestResources.repository
            .appendingPathComponent("Tests/SluiceModelsTests/Fixtures/trecvit/mu_cli.logits.npy"))
        let error = Tensor.maxRelativeError(try NPY.read(contentsOf: output), expected)
        print("sluice infer trecvit_mu vs reference: max relative error \(error)")
        XCTAssertLessThanOrEqual(error, 1e-4)

        let unknown = try SluiceCLI.run(["infer", "--model", "trecvit_mu", "--weights", weights.path, "--input", input.path,
                                         "--output", output.path, "--set", "clip_frames=2"])
        XCTAssertEqual(unknown.status, 1)
        XCTAssertEqual(unknown.stderr, "sluice: error: --set unknown setting 'clip_frames' (TRecViT takes frames_per_clip, mode)\n")
        try NPY.write(Tensor(zeros: [1, 3, 32, 32]), to: input)
        let rank = try SluiceCLI.run(["infer", "--model", "trecvit_mu", "--weights", weights.path, "--input", input.path,
                                      "--output", output.path])
        XCTAssertEqual(rank.status, 1)
        XCTAssertEqual(rank.stderr, "sluice: error: \(input.path): expected videos [N, T, H, W, 3] in [0, 1], got [1, 3, 32, 32]\n")
    }

    /// `classify-video` end to end: JSONL with frame and clip records, CSV with the clip columns, an overlay.
    func testClassifyVideoCommand() throws {
        let folder = try temporaryFolder()
        let weights = try Self.muWeights(in: folder)
        let jsonl = folder.appendingPathComponent("r.jsonl"), csv = folder.appendingPathComponent("r.csv")
        let overlays = folder.appendingPathComponent("overlays")
        let run = try SluiceCLI.run(["classify-video", dog, "--model", "trecvit_mu", "--weights", weights.path,
                                     "--sample", "fps=2", "--set", "frames_per_clip=3", "--out", jsonl.path,
                                     "--overlay", overlays.path, "--top-k", "3"])
        XCTAssertEqual(run.status, 0, run.stderr)
        let lines = try String(contentsOf: jsonl, encoding: .utf8).split(separator: "\n")
        let records = try lines.map { try JSONDecoder().decode(ResultRecord.self, from: Data($0.utf8)) }
        XCTAssertEqual(records.filter { $0.frameIndex != nil }.count, 9)
        XCTAssertEqual(records.compactMap(\.clip).map(\.frames), [3, 3, 3])
        XCTAssertTrue(records.allSatisfy { $0.topK?.count == 3 && $0.model == "trecvit_mu" })
        XCTAssertTrue(FileManager.default.fileExists(atPath: OverlaySink.path(for: dog, in: overlays.path)))
        let csvRun = try SluiceCLI.run(["classify-video", dog, "--model", "trecvit_mu", "--weights", weights.path,
                                        "--sample", "fps=2", "--set", "frames_per_clip=3", "--out", csv.path, "--top-k", "1"])
        XCTAssertEqual(csvRun.status, 0, csvRun.stderr)
        let rows = try String(contentsOf: csv, encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(rows[0], "source,frame_index,pts,model,error,clip_index,clip_frames,index_1,label_1,score_1")
        XCTAssertEqual(rows.count, 1 + 9 + 3)
        XCTAssertTrue(rows[4].contains(",trecvit_mu,,0,3,"), String(rows[4]))

        // Imported into the store ('/' keys kept), then found by name.
        let home = folder.appendingPathComponent("home")
        let imported = try SluiceCLI.run(["models", "import", weights.path, "--model", "trecvit_mu"], home: home)
        XCTAssertEqual(imported.status, 0, imported.stderr)
        let stored = try SluiceCLI.run(["classify-video", dog, "--model", "trecvit_mu", "--sample", "fps=2",
                                        "--set", "frames_per_clip=3", "--top-k", "3"], home: home)
        XCTAssertEqual(stored.status, 0, stored.stderr)
        // The same records; scores agree to float rounding (how many frames share a step depends on
        // timing, and a product's row tiling can change the last bit).
        let again = try stored.stdout.split(separator: "\n").map { try JSONDecoder().decode(ResultRecord.self, from: Data($0.utf8)) }
        XCTAssertEqual(again.count, records.count)
        for (a, b) in zip(again, records) {
            XCTAssertEqual(a.frameIndex, b.frameIndex)
            XCTAssertEqual(a.clip, b.clip)
            XCTAssertEqual(a.topK?.map(\.index), b.topK?.map(\.index))
            for (p, q) in zip(a.topK ?? [], b.topK ?? []) { XCTAssertEqual(p.score, q.score, accuracy: 1e-5 * q.score) }
        }
        let otherVariant = try SluiceCLI.run(["models", "import", weights.path, "--model", "trecvit_ti"], home: home)
        XCTAssertEqual(otherVariant.status, 1)
        XCTAssertTrue(otherVariant.stderr.contains("weights do not fit trecvit_ti: "), otherVariant.stderr)
        XCTAssertTrue(otherVariant.stderr.contains("problem(s): the checkpoint looks like trecvit_mu (width 32, 1 layer); "),
                      otherVariant.stderr)
        XCTAssertTrue(otherVariant.stderr.contains("tokenizer/cls has shape [1, 1, 32], expected [1, 1, 192]"), otherVariant.stderr)

        let wrong = try SluiceCLI.run(["classify-video", dog, "--model", "efficientnet_lite0"])
        XCTAssertEqual(wrong.stderr, "sluice: error: efficientnet_lite0 does image-classification, not video classification (see `sluice models list`)\n")
        let sample = try SluiceCLI.run(["classify-video", dog, "--sample", "fps=0"])
        XCTAssertTrue(sample.stderr.contains("--sample fps=0: expected all, fps=X (X > 0), every=N or uniform=N (N > 0)"), sample.stderr)
    }
}
