import Foundation
import SluiceMedia
import SluiceModels
import SluiceTensor

/// What an input item is: one image, or a video whose frames are chosen by a sampling policy.
public enum MediaKind: Sendable, Equatable {
    case image
    case video(VideoSampling)
}

/// What happens to a model's logits: softmax, the k best classes, and optionally only those whose
/// probability reaches a threshold.
public struct Postprocessing: Sendable, Equatable {
    public var topK: Int
    public var minScore: Float?
    public init(topK: Int, minScore: Float? = nil) { self.topK = topK; self.minScore = minScore }
}

/// Receives each finished item's records, in input order: one record for an image, one per sampled
/// frame for a video (plus a closing error record when the video was damaged).
public protocol ItemSink: AnyObject {
    /// `index` counts the items handed to `PipelineExecutor.run`, from 0.
    func write(item index: Int, records: [ResultRecord]) throws
    func close() throws
}

/// Writes the records of each item to a record sink (JSON Lines, CSV).
public final class RecordItemSink: ItemSink {
    let sink: RecordSink
    public init(_ sink: RecordSink) { self.sink = sink }
    public func write(item index: Int, records: [ResultRecord]) throws { for record in records { try sink.write(record) } }
    public func close() throws { try sink.close() }
}

/// The stage graph that runs a pipeline: decoder threads → bounded frame queue → model stage (dynamic
/// batching) → writer, which puts items back in input order and hands them to the sink.
///
/// Memory stays flat whatever the input size: decoded frames live in a fixed pool of input slots (a
/// decoder waits for a free slot, so a slow model holds back decoding), and at most `window` items are
/// in flight. Decoding and preprocessing run on their own threads, overlapped with inference.
public final class PipelineExecutor {
    public struct Options: Sendable {
        /// Most frames per forward pass.
        public var maxBatch: Int
        /// Longest time the model stage waits for a batch to fill once it has its first frame (seconds).
        public var maxWait: Double
        /// Decoder threads.
        public var decoders: Int
        /// Decoded frames waiting for the model (beyond the batch it is running).
        public var queuedFrames: Int
        /// Items started but not yet written (bounds the reordering held by the writer).
        public var window: Int

        public init(maxBatch: Int = 8, maxWait: Double = 0.05, decoders: Int? = nil, queuedFrames: Int? = nil,
                    window: Int = 64) {
            self.maxBatch = max(1, maxBatch)
            self.maxWait = max(0, maxWait)
            self.decoders = max(1, decoders ?? ProcessInfo.processInfo.activeProcessorCount)
            self.queuedFrames = max(1, queuedFrames ?? 2 * self.maxBatch)
            self.window = max(1, window)
        }
    }

    public struct Summary: Sendable {
        /// Items written to the sink (successes and failures).
        public var items = 0
        public var failures = 0
        /// Frames that went through the model.
        public var frames = 0
        public var seconds = 0.0
        /// The run stopped early because `shouldStop` said so; items not written stay to be done.
        public var stopped = false
        /// The most items started and not yet written at any time (at most `Options.window`).
        public var mostItemsInFlight = 0
        /// The most decoded frames held at any time (at most the slot pool's size).
        public var mostFramesDecoded = 0
        public var itemsPerSecond: Double { seconds > 0 ? Double(items) / seconds : 0 }
        public var framesPerSecond: Double { seconds > 0 ? Double(frames) / seconds : 0 }
    }

    public let card: ModelCard
    let classifier: any ImageClassifier
    public let postprocessing: Postprocessing
    public let options: Options
    let loader: ImageLoader

    public init(card: ModelCard, classifier: any ImageClassifier, postprocessing: Postprocessing, options: Options) {
        self.card = card
        self.classifier = classifier
        self.postprocessing = postprocessing
        self.options = options
        loader = ImageLoader(card.preprocessing)
    }

    /// Runs every item through the graph and writes them in order. `shouldStop` is asked after each
    /// written item (Ctrl-C, a cancelled job): no new item starts, the items in flight finish, and the
    /// run returns having written a prefix of `items` and nothing else.
    public func run(_ items: [InputItem], media: MediaKind, sink: ItemSink, progress: ProgressReporter? = nil,
                    shouldStop: () -> Bool = { false }) throws -> Summary {
        let start = Date()
        var summary = Summary()
        guard !items.isEmpty else { return summary }
        let side = card.preprocessing.cropSize
        let slotSize = side * side * 3
        let decoderCount = min(options.decoders, items.count)
        let slotCount = options.queuedFrames + options.maxBatch + decoderCount
        let slots = SlotPool(count: slotCount, size: slotSize)
        let frames = BoundedQueue<DecodedFrame>(capacity: slotCount)
        let reports = BoundedQueue<Report>(capacity: 4 * slotCount + 2 * options.window)
        let admission = Admission(total: items.count, window: options.window)

        // Decoders: take the next admitted item, decode its frames into slots, queue them for the model.
        let decoding = DispatchGroup()
        let decoder = FrameDecoder(items: items, media: media, loader: loader, slots: slots, frames: frames,
                                   reports: reports, admission: admission)
        for worker in 0..<decoderCount {
            decoding.enter()
            let thread = Thread {
                while let index = admission.next() { decoder.decode(item: index) }
                decoding.leave()
            }
            thread.name = "sluice.decode.\(worker)"
            thread.start()
        }
        decoding.notify(queue: .global()) { frames.close() }

        // Model stage: dynamic batches of whatever frames are ready, up to maxBatch or maxWait.
        let model = ModelStage(classifier: classifier, card: card, postprocessing: postprocessing, items: items,
                               side: side, slots: slots, frames: frames, reports: reports, options: options)
        let modelDone = DispatchSemaphore(value: 0)
        let modelThread = Thread {
            model.run()
            reports.close()
            modelDone.signal()
        }
        modelThread.name = "sluice.model"
        modelThread.start()

        // Writer (this thread): reorder, write complete items in input order, report progress.
        var assembly: [Int: ItemAssembly] = [:]
        var nextToWrite = 0
        var halted = false
        var writeError: Error?
        while let report = reports.pop() {
            switch report {
            case .result(let item, let record):
                assembly[item, default: ItemAssembly()].records.append(record)
                summary.frames += 1
            case .end(let item, let frameCount, let error, let cancelled):
                var entry = assembly[item, default: ItemAssembly()]
                entry.expected = frameCount; entry.error = error; entry.cancelled = cancelled
                assembly[item] = entry
            }
            while !halted, let entry = assembly[nextToWrite], entry.isComplete {
                assembly[nextToWrite] = nil
                if entry.cancelled { halted = true; break }
                var records = entry.records
                if let error = entry.error {
                    records.append(ResultRecord(source: items[nextToWrite].path, model: card.name, error: error))
                    summary.failures += 1
                }
                do {
                    try sink.write(item: nextToWrite, records: records)
                } catch {
                    // Keep draining the graph so every thread finishes, but write nothing more.
                    writeError = error; halted = true; admission.stop()
                    break
                }
                nextToWrite += 1
                summary.items += 1
                admission.written(nextToWrite)
                progress?.update(done: summary.items, failed: summary.failures)
                if !summary.stopped && nextToWrite < items.count && shouldStop() {
                    summary.stopped = true
                    admission.stop()
                }
            }
        }
        modelDone.wait()
        decoding.wait()
        if let writeError { throw writeError }
        if halted || nextToWrite < items.count { summary.stopped = true }
        summary.mostItemsInFlight = admission.mostInFlight
        summary.mostFramesDecoded = slots.mostInUse
        summary.seconds = Date().timeIntervalSince(start)
        return summary
    }
}

/// One item's records as they arrive, complete once its decoder has said how many frames it queued
/// and that many results have come back.
private struct ItemAssembly {
    var records: [ResultRecord] = []
    var expected: Int?
    var error: String?
    var cancelled = false
    var isComplete: Bool { expected.map { records.count >= $0 } ?? false }
}

/// Messages to the writer: a frame's result, or the end of an item (how many frames it sent).
private enum Report {
    case result(item: Int, record: ResultRecord)
    case end(item: Int, frames: Int, error: String?, cancelled: Bool)
}

/// A decoded, preprocessed frame waiting for the model, in slot `slot` of the pool.
private struct DecodedFrame {
    let item: Int
    let frameIndex: Int?
    let pts: Double?
    let slot: Int
}

/// Hands out item indices in order, never more than `window` ahead of the writer, until stopped.
private final class Admission: @unchecked Sendable {
    private let condition = NSCondition()
    private let total: Int
    private let window: Int
    private var nextItem = 0
    private var writtenCount = 0
    private var stopping = false
    private(set) var mostInFlight = 0

    init(total: Int, window: Int) { self.total = total; self.window = window }

    func next() -> Int? {
        condition.lock()
        defer { condition.unlock() }
        while !stopping && nextItem < total && nextItem >= writtenCount + window { condition.wait() }
        guard !stopping, nextItem < total else { return nil }
        nextItem += 1
        mostInFlight = max(mostInFlight, nextItem - writtenCount)
        return nextItem - 1
    }

    func written(_ count: Int) {
        condition.lock(); writtenCount = count; condition.broadcast(); condition.unlock()
    }

    func stop() {
        condition.lock(); stopping = true; condition.broadcast(); condition.unlock()
    }

    var isStopping: Bool { condition.lock(); defer { condition.unlock() }; return stopping }
}

/// A fixed set of model-input buffers; a decoder waits for a free one (backpressure).
private final class SlotPool: @unchecked Sendable {
    let size: Int
    let storage: UnsafeMutablePointer<Float>
    private let free: BoundedQueue<Int>

    init(count: Int, size: Int) {
        self.size = size
        storage = .allocate(capacity: count * size)
        free = BoundedQueue(capacity: count)
        for slot in 0..<count { free.push(slot) }
    }

    deinit { storage.deallocate() }

    private let lock = NSLock()
    private var inUse = 0
    private(set) var mostInUse = 0

    func acquire() -> Int {
        let slot = free.pop()!
        lock.lock(); inUse += 1; mostInUse = max(mostInUse, inUse); lock.unlock()
        return slot
    }

    func release(_ slot: Int) {
        lock.lock(); inUse -= 1; lock.unlock()
        free.push(slot)
    }
    func pointer(_ slot: Int) -> UnsafeMutablePointer<Float> { storage + slot * size }
}

/// Decodes one item (an image, or a video's sampled frames) into slots and queues the frames.
private final class FrameDecoder: @unchecked Sendable {
    let items: [InputItem]
    let media: MediaKind
    let loader: ImageLoader
    let slots: SlotPool
    let frames: BoundedQueue<DecodedFrame>
    let reports: BoundedQueue<Report>
    let admission: Admission

    init(items: [InputItem], media: MediaKind, loader: ImageLoader, slots: SlotPool,
         frames: BoundedQueue<DecodedFrame>, reports: BoundedQueue<Report>, admission: Admission) {
        self.items = items; self.media = media; self.loader = loader
        self.slots = slots; self.frames = frames; self.reports = reports; self.admission = admission
    }

    func decode(item index: Int) {
        let item = items[index]
        if let listingError = item.listingError {
            reports.push(.end(item: index, frames: 0, error: "\(item.path): \(listingError)", cancelled: false))
            return
        }
        switch media {
        case .image: decodeImage(index, path: item.path)
        case .video(let sampling): decodeVideo(index, path: item.path, sampling: sampling)
        }
    }

    private func decodeImage(_ index: Int, path: String) {
        let slot = slots.acquire()
        do {
            try loader.load(path: path, into: slots.pointer(slot))
        } catch {
            slots.release(slot)
            reports.push(.end(item: index, frames: 0, error: "\(error)", cancelled: false))
            return
        }
        frames.push(DecodedFrame(item: index, frameIndex: nil, pts: nil, slot: slot))
        reports.push(.end(item: index, frames: 1, error: nil, cancelled: false))
    }

    /// Streams the sampled frames: swscale resizes the shorter side straight to the preprocessing size,
    /// then the center crop is normalised into a slot. Frames decoded before a mid-stream failure are kept
    /// and the item ends with the error (reported as partial).
    private func decodeVideo(_ index: Int, path: String, sampling: VideoSampling) {
        let reader: VideoReader
        do {
            reader = try VideoReader(path: path, options: loader.videoOptions)
        } catch {
            reports.push(.end(item: index, frames: 0, error: "\(error)", cancelled: false))
            return
        }
        var count = 0
        for frame in reader.frames(sampling) {
            if admission.isStopping {
                reports.push(.end(item: index, frames: count, error: nil, cancelled: true))
                return
            }
            let slot = slots.acquire()
            loader.writeInput(from: frame.image, into: slots.pointer(slot))
            frames.push(DecodedFrame(item: index, frameIndex: frame.index, pts: frame.pts, slot: slot))
            count += 1
        }
        reports.push(.end(item: index, frames: count, error: reader.finalError.map { "\($0)" }, cancelled: false))
    }
}

/// Pulls frames, batches them dynamically, runs the model, and reports one record per frame.
private final class ModelStage: @unchecked Sendable {
    let classifier: any ImageClassifier
    let card: ModelCard
    let postprocessing: Postprocessing
    let items: [InputItem]
    let side: Int
    let slots: SlotPool
    let frames: BoundedQueue<DecodedFrame>
    let reports: BoundedQueue<Report>
    let options: PipelineExecutor.Options

    init(classifier: any ImageClassifier, card: ModelCard, postprocessing: Postprocessing, items: [InputItem],
         side: Int, slots: SlotPool, frames: BoundedQueue<DecodedFrame>, reports: BoundedQueue<Report>,
         options: PipelineExecutor.Options) {
        self.classifier = classifier; self.card = card; self.postprocessing = postprocessing; self.items = items
        self.side = side; self.slots = slots; self.frames = frames; self.reports = reports; self.options = options
    }

    func run() {
        var batch: [DecodedFrame] = []
        batch.reserveCapacity(options.maxBatch)
        while let first = frames.pop() {
            batch.removeAll(keepingCapacity: true)
            batch.append(first)
            let deadline = Date().addingTimeInterval(options.maxWait)
            while batch.count < options.maxBatch, let next = frames.pop(until: deadline) { batch.append(next) }
            infer(batch)
        }
    }

    private func infer(_ batch: [DecodedFrame]) {
        let size = slots.size
        let input = Tensor(uninitialized: [batch.count, side, side, 3]) { out in
            for (row, frame) in batch.enumerated() {
                (out.baseAddress! + row * size).update(from: slots.pointer(frame.slot), count: size)
            }
        }
        for frame in batch { slots.release(frame.slot) }
        let rows = Softmax.lastAxis(classifier(input)).topK(postprocessing.topK)
        for (row, frame) in batch.enumerated() {
            var predictions = rows[row].map {
                Prediction(index: $0.index, label: card.labels.label($0.index), score: $0.value)
            }
            if let minScore = postprocessing.minScore { predictions = predictions.filter { $0.score >= minScore } }
            let record = ResultRecord(source: items[frame.item].path, frameIndex: frame.frameIndex, pts: frame.pts,
                                      model: card.name, topK: predictions)
            reports.push(.result(item: frame.item, record: record))
        }
    }
}
