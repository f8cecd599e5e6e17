import Foundation
import XCTest
import MetricsTestKit
import SluiceTestSupport
import SluiceMedia
import SluiceModels
import SluicePipeline
import SluiceTensor

/// A streaming video model whose session counts the frames it has seen: frame n of a video (from 1)
/// scores class n highest, so a record shows whether its video's session saw its frames in order and
/// alone. Steps are logged to show that two videos' sessions were interleaved.
final class FrameCountingVideoModel: StreamingVideoModel, @unchecked Sendable {
    final class Session: VideoSession {
        let id: Int
        let model: FrameCountingVideoModel
        var seen = 0
        init(id: Int, model: FrameCountingVideoModel) { self.id = id; self.model = model }
        func step(_ frame: Tensor) throws -> FrameOutput {
            seen += 1
            if let failAt = model.failAtFrame, seen == failAt, id == 0 { throw StepFailure() }
            model.log(session: id)
            if model.delay > 0 { Thread.sleep(forTimeInterval: model.delay) }
            var logits = [Float](repeating: 0, count: 100)
            logits[seen % 100] = 10
            return .logits(logits)
        }
    }
    struct StepFailure: Error, CustomStringConvertible { var description: String { "state diverged" } }

    let delay: Double
    let failAtFrame: Int?
    private let lock = NSLock()
    private var opened = 0
    private var steps: [Int] = []

    init(delay: Double = 0, failAtFrame: Int? = nil) { self.delay = delay; self.failAtFrame = failAtFrame }

    var stepLog: [Int] { lock.lock(); defer { lock.unlock() }; return steps }
    func log(session: Int) { lock.lock(); steps.append(session); lock.unlock() }

    func openSession(prompt: VideoPrompt) throws -> any VideoSession {
        lock.lock(); defer { lock.unlock() }
        opened += 1
        return Session(id: opened - 1, model: self)
    }
}

/// A segmenter that labels the left half of every image class 1 and the right half class 2.
struct HalvesSegmenter: ImageSegmenter {
    let numClasses = 3
    func segment(_ input: Tensor) -> Tensor {
        let (n, h, w) = (input.shape[0], input.shape[1], input.shape[2])
        return Tensor(uninitialized: [n, h, w, numClasses]) { out in
            for i in 0..<(n * h * w) {
                let x = i % w
                out[i * 3] = 0; out[i * 3 + 1] = x < w / 2 ? 5 : 1; out[i * 3 + 2] = x < w / 2 ? 1 : 5
            }
        }
    }
}

final class TaskSeamsTests: XCTestCase {
    let dog = TestResources.repository.appendingPathComponent("assets/videos/dog.mp4").path
    let crop = ImageInput.crop(Preprocessing(resizeShorterSide: 72, cropSize: 64, interpolation: .bilinear,
                                             mean: [127, 127, 127], std: [128, 128, 128]))
    let labels = LabelSet(name: "counts", labels: (0..<100).map { "frame \($0)" })

    func temporaryFolder() throws -> URL {
        let folder = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("sluice-seams-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: folder) }
        return folder
    }

    func testStreamingModelGetsOneOrderedSessionPerVideoWithVideosInterleaved() throws {
        let model = FrameCountingVideoModel(delay: 0.005)
        let plan = try PipelinePlan(model: .init(name: "counter", input: crop, labels: labels, loaded: .streamingVideo(model)),
                                    media: .video(.fps(8)), postprocessing: Postprocessing(topK: 1))
        var written: [Int] = []
        var lastProgress: (Int, Int, Int)?
        let observer = ClosureObserver { event in
            switch event {
            case .item(let index, _, _): written.append(index)
            case .progress(let done, let failed, let total): lastProgress = (done, failed, total)
            default: break
            }
        }
        let sink = CollectingSink()
        let items = [InputItem(path: dog), InputItem(path: "/no/such/clip.mp4"), InputItem(path: dog)]
        // Four input slots: neither decoder can run more than a few frames ahead of the model, so the
        // two videos' frames reach it interleaved whatever the scheduling.
        let summary = try PipelineExecutor(plan: plan, options: .init(maxBatch: 1, maxWait: 0, decoders: 2, queuedFrames: 1))
            .run(items, sink: sink, observers: [observer])

        let frames = try VideoReader(path: dog).frames(.fps(8)).map(\.index)
        XCTAssertGreaterThan(frames.count, 10)
        XCTAssertEqual(sink.items.map(\.index), [0, 1, 2])
        for item in [0, 2] {
            let records = sink.items[item].records
            XCTAssertEqual(records.map(\.frameIndex), frames, "every sampled frame, in order")
            // Frame n of the video is the session's n-th step: each video had its own session, in order.
            XCTAssertEqual(records.map { $0.topK?.first?.index }, Array(1...frames.count), "item \(item)")
        }
        XCTAssertNotNil(sink.items[1].records.first?.error)
        let log = model.stepLog
        XCTAssertEqual(log.count, 2 * frames.count)
        XCTAssertEqual(Set(log), [0, 1], "two sessions, one per readable video")
        let switches = zip(log, log.dropFirst()).filter { $0 != $1 }.count
        XCTAssertGreaterThan(switches, 1, "the two videos' frames were interleaved in one run: \(log)")
        XCTAssertEqual(summary.mostSessionsOpen, 2)
        XCTAssertEqual(written, [0, 1, 2])
        XCTAssertEqual(lastProgress?.0, 3); XCTAssertEqual(lastProgress?.1, 1); XCTAssertEqual(lastProgress?.2, 3)
    }

    func testAFailingSessionEndsOnlyItsVideoKeepingTheFramesBefore() throws {
        let model = FrameCountingVideoModel(failAtFrame: 4)
        let plan = try PipelinePlan(model: .init(name: "counter", input: crop, labels: labels, loaded: .streamingVideo(model)),
                                    media: .video(.fps(2)), postprocessing: Postprocessing(topK: 1))
        let sink = CollectingSink()
        let summary = try PipelineExecutor(plan: plan, options: .init(maxBatch: 1, decoders: 1))
            .run([InputItem(path: dog), InputItem(path: dog)], sink: sink)
        let first = sink.items[0].records
        XCTAssertEqual(first.dropLast().map { $0.topK?.first?.index }, [1, 2, 3])
        XCTAssertTrue(first.last?.error?.contains("frame") ?? false, "\(first.last as Any)")
        XCTAssertTrue(sink.items[1].records.allSatisfy { $0.error == nil })
        XCTAssertEqual(summary.failures, 1)
    }

    func testAStreamingModelNeedsAVideoSource() {
        XCTAssertThrowsError(try PipelinePlan(model: .init(name: "counter", input: crop, labels: labels,
                                                           loaded: .streamingVideo(FrameCountingVideoModel())),
                                              media: .image, postprocessing: Postprocessing(topK: 1)))
    }

    func testSegmenterMasksReachTheRecordsAndTheMaskSink() throws {
        let folder = try temporaryFolder()
        let photos = InputWalker.expand([TestResources.repository.appendingPathComponent("assets/images").path])
        XCTAssertGreaterThanOrEqual(photos.count, 2)
        let input = ImageInput.anySize(maxWidth: 80, maxHeight: 60, interpolation: .bilinear,
                                       mean: [0, 0, 0], std: [1, 1, 1])
        let plan = try PipelinePlan(model: .init(name: "halves", input: input,
                                                 labels: LabelSet(name: "halves", labels: ["none", "left", "right"]),
                                                 loaded: .segmenter(HalvesSegmenter())),
                                    media: .image, postprocessing: Postprocessing(topK: 1),
                                    maskFolder: folder.appendingPathComponent("masks").path)
        let sink = CollectingSink()
        let items = photos + [InputItem(path: folder.appendingPathComponent("missing.jpg").path)]
        let summary = try PipelineExecutor(plan: plan, options: .init(maxBatch: 4, decoders: 2)).run(items, sink: sink)
        XCTAssertEqual(summary.items, items.count)
        XCTAssertEqual(summary.failures, 1)
        for (item, photo) in zip(sink.items, photos) {
            let record = try XCTUnwrap(item.records.first)
            XCTAssertNil(record.error)
            XCTAssertNil(record.topK)
            let mask = try XCTUnwrap(record.mask)
            // The model saw the picture fitted within 80x60; the mask comes back at the picture's own size.
            let picture = try ImageDecoder().decode(contentsOf: URL(fileURLWithPath: photo.path))
            XCTAssertEqual(mask.width, picture.width); XCTAssertEqual(mask.height, picture.height)
            XCTAssertEqual(mask.classes.map(\.index).sorted(), [1, 2])
            let left = try XCTUnwrap(mask.classes.first { $0.index == 1 }?.pixels)
            let columnsPerModelColumn = mask.width / 80 + 2
            XCTAssertEqual(Double(left), Double(mask.height * mask.width / 2), accuracy: Double(mask.height * columnsPerModelColumn))
            XCTAssertEqual(mask.classes.map(\.pixels).reduce(0, +), mask.width * mask.height)
            XCTAssertEqual(mask.classes.first { $0.index == 1 }?.label, "left")
            // The mask sink wrote a palette PNG whose colours are the classes' palette entries.
            let file = try XCTUnwrap(mask.file)
            XCTAssertEqual(file, OverlaySink.maskPath(for: photo.path, frameIndex: nil, in: plan.maskFolder!))
            let png = try ImageDecoder().decode(contentsOf: URL(fileURLWithPath: file))
            XCTAssertEqual(png.width, mask.width); XCTAssertEqual(png.height, mask.height)
            let l = png[0, mask.height - 1], r = png[mask.width - 1, 0]
            XCTAssertEqual(RGBColor(l.r, l.g, l.b), Palette.voc[1])
            XCTAssertEqual(RGBColor(r.r, r.g, r.b), Palette.voc[2])
        }
        let encoded = try JSONEncoder().encode(sink.items[0].records[0])
        XCTAssertTrue(String(decoding: encoded, as: UTF8.self).contains("\"mask\""))
    }

    func testPaletteIsPascalVOC() {
        XCTAssertEqual(Palette.voc[0], RGBColor(0, 0, 0))
        XCTAssertEqual(Palette.voc[1], RGBColor(128, 0, 0))
        XCTAssertEqual(Palette.voc[2], RGBColor(0, 128, 0))
        XCTAssertEqual(Palette.voc[15], RGBColor(192, 128, 128))
        XCTAssertEqual(Palette.voc[255], RGBColor(224, 224, 192))
    }
}


final class PipelineMetricsTests: XCTestCase {
    func testRunEventsBecomeMetrics() throws {
        let photos = InputWalker.expand([TestResources.repository.appendingPathComponent("assets/images").path])
        let items = photos + [InputItem(path: "/no/such/photo.jpg")]
        let card = try ModelRegistry.card(named: "efficientnet_lite0")
        let classifier = PixelMeanClassifier()
        let plan = try PipelinePlan(card: card, loaded: .classifier(classifier), media: .image,
                                    postprocessing: Postprocessing(topK: 1))
        let metrics = TestMetrics()
        let summary = try PipelineExecutor(plan: plan, options: .init(maxBatch: 4, maxWait: 0.01, decoders: 2))
            .run(items, sink: CollectingSink(), observers: [PipelineMetrics(model: card.name, factory: metrics)])
        let model = [("model", card.name)]
        XCTAssertEqual(metrics.counterTotal(label: "sluice_items_total", dimensions: model + [("outcome", "done")]),
                       Int64(photos.count))
        XCTAssertEqual(metrics.counterTotal(label: "sluice_items_total", dimensions: model + [("outcome", "failed")]), 1)
        XCTAssertEqual(metrics.counterTotal(label: "sluice_frames_total", dimensions: model), Int64(summary.frames))
        XCTAssertEqual(metrics.counterTotal(label: "sluice_batches_total", dimensions: model),
                       Int64(classifier.batchSizes.count))
        let sizes = try metrics.expectRecorder("sluice_batch_frames", model).values
        XCTAssertEqual(sizes.map { Int($0) }, classifier.batchSizes)
        XCTAssertEqual(try metrics.expectTimer("sluice_batch_seconds", model).values.count, classifier.batchSizes.count)
        XCTAssertFalse(try metrics.expectGauge("sluice_queued_frames", model).values.isEmpty)
    }
}
