import Foundation
import XCTest
import SluiceTestSupport
import SluiceMedia
import SluiceModels
import SluicePipeline
import SluiceTensor

/// A stand-in model whose top-1 class is a function of the input's pixels (so a record can be traced
/// back to its image) and that remembers the batch sizes it was given.
final class PixelMeanClassifier: ImageClassifier, @unchecked Sendable {
    let numClasses = 1000
    let delay: Double
    private let lock = NSLock()
    private var sizes: [Int] = []

    init(delay: Double = 0) { self.delay = delay }

    var batchSizes: [Int] { lock.lock(); defer { lock.unlock() }; return sizes }

    /// Class = the input's mean value mapped onto 0..<1000.
    static func expectedClass(_ image: UnsafeBufferPointer<Float>) -> Int {
        let mean = image.reduce(0, +) / Float(image.count)
        return min(999, max(0, Int((mean * 100 + 500).rounded())))
    }

    func callAsFunction(_ input: Tensor) -> Tensor {
        lock.lock(); sizes.append(input.shape[0]); lock.unlock()
        if delay > 0 { Thread.sleep(forTimeInterval: delay) }
        let n = input.shape[0], per = input.count / n
        return Tensor(uninitialized: [n, numClasses]) { out in
            input.data.withUnsafeBufferPointer { x in
                for row in 0..<n {
                    let top = Self.expectedClass(UnsafeBufferPointer(rebasing: x[(row * per)..<((row + 1) * per)]))
                    for c in 0..<numClasses { out[row * numClasses + c] = -Float(abs(c - top)) }
                }
            }
        }
    }
}

/// Collects what the executor writes.
final class CollectingSink: ItemSink {
    var items: [(index: Int, records: [ResultRecord])] = []
    func write(item index: Int, records: [ResultRecord]) throws { items.append((index, records)) }
    func close() throws {}
}

final class PipelineExecutorTests: XCTestCase {
    let card = try! ModelRegistry.card(named: "efficientnet_lite0")

    /// `copies` copies of each bundled photo (distinct pixels, so distinct classes), plus bad files.
    func makeFolder(copies: Int, withBadFiles: Bool = false) throws -> [InputItem] {
        let root = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("sluice-exec-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: root) }
        let photos = TestResources.repository.appendingPathComponent("assets/images")
        let names = try FileManager.default.contentsOfDirectory(atPath: photos.path).sorted()
        for copy in 0..<copies {
            for name in names {
                try FileManager.default.copyItem(at: photos.appendingPathComponent(name),
                                                 to: root.appendingPathComponent(String(format: "%03d_%@", copy, name)))
            }
        }
        if withBadFiles {
            try Data().write(to: root.appendingPathComponent("000_empty.jpg"))
            try Data("not an image".utf8).write(to: root.appendingPathComponent("001_text.png"))
        }
        return InputWalker.expand([root.path])
    }

    func run(_ items: [InputItem], media: MediaKind = .image, classifier: PixelMeanClassifier = PixelMeanClassifier(),
             options: PipelineExecutor.Options, shouldStop: () -> Bool = { false }) throws
        -> (PipelineExecutor.Summary, CollectingSink) {
        let sink = CollectingSink()
        let plan = try PipelinePlan(card: card, loaded: .classifier(classifier), media: media,
                                    postprocessing: Postprocessing(topK: 1))
        let executor = PipelineExecutor(plan: plan, options: options)
        let summary = try executor.run(items, sink: sink, shouldStop: shouldStop)
        return (summary, sink)
    }

    func testOutputIsInInputOrderWhateverTheDecodersAndBatching() throws {
        let items = try makeFolder(copies: 6, withBadFiles: true)
        // Reference: one decoder, one image at a time, nothing ahead.
        let (_, reference) = try run(items, options: .init(maxBatch: 1, maxWait: 0, decoders: 1, window: 1))
        XCTAssertEqual(reference.items.map(\.index), Array(items.indices))
        let classes = Set(reference.items.compactMap { $0.records[0].topK?.first?.index })
        XCTAssertEqual(classes.count, 6, "each bundled photo maps to its own class")

        for options in [PipelineExecutor.Options(maxBatch: 5, maxWait: 0.01, decoders: 4, window: 7),
                        PipelineExecutor.Options(maxBatch: 8, maxWait: 1, decoders: 3, queuedFrames: 2, window: 64)] {
            let (summary, sink) = try run(items, options: options)
            XCTAssertEqual(summary.items, items.count)
            XCTAssertEqual(summary.failures, 2)
            XCTAssertFalse(summary.stopped)
            XCTAssertEqual(sink.items.map(\.index), Array(items.indices))
            for (got, want) in zip(sink.items, reference.items) {
                XCTAssertEqual(got.records, want.records)
            }
        }
        let errors = reference.items.compactMap { $0.records[0].error }
        XCTAssertEqual(errors.count, 2)
        XCTAssertTrue(errors.allSatisfy { $0.contains("000_empty.jpg") || $0.contains("001_text.png") }, "\(errors)")
    }

    func testBatchesFillUpToMaxBatchAndTheLastOneIsPartial() throws {
        let items = try makeFolder(copies: 2)   // 12 images
        let classifier = PixelMeanClassifier()
        // A long max wait: every batch but the last waits until it is full.
        _ = try run(items, classifier: classifier, options: .init(maxBatch: 5, maxWait: 30, decoders: 2))
        XCTAssertEqual(classifier.batchSizes, [5, 5, 2])
    }

    func testASlowModelHoldsBackDecodingWithinTheWindow() throws {
        let items = try makeFolder(copies: 4)   // 24 images
        let classifier = PixelMeanClassifier(delay: 0.02)
        let options = PipelineExecutor.Options(maxBatch: 2, maxWait: 0, decoders: 2, queuedFrames: 2, window: 3)
        let (summary, sink) = try run(items, classifier: classifier, options: options)
        XCTAssertEqual(sink.items.count, items.count)
        XCTAssertLessThanOrEqual(summary.mostItemsInFlight, 3)
        XCTAssertLessThanOrEqual(summary.mostFramesDecoded, options.queuedFrames + options.maxBatch + options.decoders)
        XCTAssertEqual(classifier.batchSizes.reduce(0, +), items.count)
    }

    func testStoppingWritesAPrefixAndStartsNothingNew() throws {
        let items = try makeFolder(copies: 5)   // 30 images
        var asked = 0
        let (summary, sink) = try run(items, options: .init(maxBatch: 2, maxWait: 0, decoders: 2, window: 4),
                                      shouldStop: { asked += 1; return asked >= 3 })
        XCTAssertTrue(summary.stopped)
        XCTAssertGreaterThanOrEqual(sink.items.count, 3)
        XCTAssertLessThan(sink.items.count, 3 + 4 + 1, "only the items in flight finish after the stop")
        XCTAssertEqual(sink.items.map(\.index), Array(0..<sink.items.count))
    }

    func testVideoFramesAreSampledByTimeAndKeptInOrder() throws {
        let video = TestResources.repository.appendingPathComponent("assets/videos/dog.mp4").path
        let items = [InputItem(path: video), InputItem(path: "/no/such/clip.mp4"), InputItem(path: video)]
        let (summary, sink) = try run(items, media: .video(.fps(2)), options: .init(maxBatch: 4, maxWait: 0.01, decoders: 2))
        // The same frames, by index and timestamp, as the reader gives for this policy.
        let reader = try VideoReader(path: video)
        let expected = reader.frames(.fps(2)).map { ($0.index, $0.pts) }
        XCTAssertEqual(expected.count, 9)
        XCTAssertEqual(sink.items.map(\.index), [0, 1, 2])
        for item in [0, 2] {
            let records = sink.items[item].records
            XCTAssertEqual(records.map(\.frameIndex), expected.map(\.0))
            XCTAssertEqual(records.map(\.pts), expected.map(\.1))
            XCTAssertTrue(records.allSatisfy { $0.error == nil && $0.source == video && $0.topK?.count == 1 })
        }
        XCTAssertEqual(sink.items[0].records, sink.items[2].records)
        XCTAssertEqual(sink.items[1].records.count, 1)
        XCTAssertNotNil(sink.items[1].records[0].error)
        XCTAssertEqual(summary.frames, 18)
        XCTAssertEqual(summary.failures, 1)
    }

    /// Overlays are drawn during the pass: one per video, even for two videos of the same name in
    /// different folders (they used to overwrite each other), each with one frame per sampled frame.
    func testOverlaysOfSameNamedVideosInDifferentFoldersAreKeptApart() throws {
        let video = TestResources.repository.appendingPathComponent("assets/videos/dog.mp4")
        let root = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("sluice-overlays-\(UUID().uuidString)")
        addTeardownBlock { try? FileManager.default.removeItem(at: root) }
        var items: [InputItem] = []
        for folder in ["a", "b"] {
            let copy = root.appendingPathComponent("\(folder)/dog.mp4")
            try FileManager.default.createDirectory(at: copy.deletingLastPathComponent(), withIntermediateDirectories: true)
            try FileManager.default.copyItem(at: video, to: copy)
            items.append(InputItem(path: copy.path))
        }
        let overlays = root.appendingPathComponent("overlays").path
        let plan = try PipelinePlan(card: card, loaded: .classifier(PixelMeanClassifier()), media: .video(.fps(2)),
                                    postprocessing: Postprocessing(topK: 1), overlayFolder: overlays)
        let sink = CollectingSink()
        _ = try PipelineExecutor(plan: plan, options: .init(maxBatch: 4, decoders: 2)).run(items, sink: sink)
        let written = try FileManager.default.contentsOfDirectory(atPath: overlays).sorted()
        XCTAssertEqual(written.count, 2, "\(written)")
        XCTAssertEqual(Set(written.map { $0.hasSuffix(".overlay.mp4") }), [true])
        for item in items {
            let overlay = try VideoReader(path: OverlaySink.path(for: item.path, in: overlays))
            XCTAssertEqual(overlay.frames(.all).map(\.pts).count, 9)
        }
    }

    func testADamagedVideoKeepsItsFramesAndEndsWithTheError() throws {
        // Bundled with the media tests' fixtures (dmlc/decord, Apache-2.0; see their PROVENANCE.csv).
        let file = TestResources.repository.appendingPathComponent("Tests/SluiceMediaTests/Fixtures/video/broken/decord_corrupted.mp4")
        let (summary, sink) = try run([InputItem(path: file.path)], media: .video(.everyNth(10)),
                                      options: .init(maxBatch: 4, maxWait: 0.01, decoders: 1))
        let records = sink.items[0].records
        XCTAssertGreaterThan(records.count, 2)
        XCTAssertTrue(records.dropLast().allSatisfy { $0.error == nil && $0.frameIndex != nil })
        XCTAssertTrue(records.last!.error?.contains("partial") ?? false, records.last!.error ?? "no error")
        XCTAssertEqual(summary.failures, 1)
    }
}
