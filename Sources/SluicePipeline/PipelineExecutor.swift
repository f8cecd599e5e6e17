import Foundation
import SluiceMedia
import SluiceModels
import SluiceTensor

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

/// Runs a compiled `PipelinePlan`: decoder threads → bounded frame queue → model step → writer, which
/// puts items back in input order and hands them to the sink. `sluice classify` (no store) and `sluice
/// run` (a job) both run through it.
///
/// On the data path a frame is, in turn: an `InputItem` (a path), a `PreparedFrame` (model-ready pixels
/// in a slot of the pool, with its index and timestamp), a `FrameResult` (the model's output for it,
/// mapped to record fields), a `ResultRecord`, and the sink's line.
///
/// Memory stays flat whatever the input size: prepared frames live in a fixed pool of input slots (a
/// decoder waits for a free slot, so a slow model holds back decoding), and at most `window` items are
/// in flight. Stateless models batch frames across items; a streaming video model gets one session per
/// video, stepped in frame order (a video's frames come from one decoder, in order, through a FIFO).
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
        /// Where forward passes run: the caller's lane when it shares the model with others (a server),
        /// else the model thread itself.
        public var lane: InferenceLane?

        public init(maxBatch: Int = 8, maxWait: Double = 0.05, decoders: Int? = nil, queuedFrames: Int? = nil,
                    window: Int = 64, lane: InferenceLane? = nil) {
            self.lane = lane
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
        /// The most video sessions open at once (streaming models).
        public var mostSessionsOpen = 0
        public var itemsPerSecond: Double { seconds > 0 ? Double(items) / seconds : 0 }
        public var framesPerSecond: Double { seconds > 0 ? Double(frames) / seconds : 0 }
    }

    public let plan: PipelinePlan
    public let options: Options
    let preparer: FramePreparer

    public init(plan: PipelinePlan, options: Options) {
        self.plan = plan
        self.options = options
        preparer = FramePreparer(plan.model.input)
    }

    /// Runs every item through the graph and writes them in order. `shouldStop` is asked after each
    /// written item (Ctrl-C, a cancelled job): no new item starts, the items in flight finish, and the
    /// run returns having written a prefix of `items` and nothing else.
    public func run(_ items: [InputItem], sink: ItemSink, observers: [PipelineObserver] = [],
                    shouldStop: () -> Bool = { false }) throws -> Summary {
        let start = Date()
        var summary = Summary()
        let notify = { (event: PipelineEvent) in for observer in observers { observer.observe(event) } }
        notify(.started(items: items.count))
        guard !items.isEmpty else { notify(.finished(summary)); return summary }
        let decoderCount = min(options.decoders, items.count)
        let slotCount = options.queuedFrames + options.maxBatch + decoderCount
        let slots = SlotPool(count: slotCount, initialSize: plan.model.input.fixedSide.map { $0 * $0 * 3 } ?? 0)
        // Item ends travel with the frames, so the queue holds up to one end per item in flight as well.
        let frames = BoundedQueue<FrameQueueEntry>(capacity: slotCount + options.window)
        let reports = BoundedQueue<Report>(capacity: 4 * slotCount + 2 * options.window)
        let admission = Admission(total: items.count, window: options.window)
        let keepsImages = plan.overlayFolder != nil

        // Decoders: take the next admitted item, decode its frames into slots, queue them for the model.
        let decoding = DispatchGroup()
        let decoder = FrameDecoder(items: items, media: plan.media, preparer: preparer, slots: slots, frames: frames,
                                   admission: admission, keepsImages: keepsImages)
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

        // Model stage: dynamic batches (stateless models) or per-video sessions (streaming models).
        let model = ModelStage(plan: plan, items: items, slots: slots, frames: frames, reports: reports,
                               options: options, notify: notify)
        let modelDone = DispatchSemaphore(value: 0)
        let modelThread = Thread {
            model.run()
            reports.close()
            modelDone.signal()
        }
        modelThread.name = "sluice.model"
        modelThread.start()

        // Writer (this thread): artefacts as frames arrive, items in input order, events.
        let artefacts = ArtefactWriter(plan: plan, items: items)
        var assembly: [Int: ItemAssembly] = [:]
        var nextToWrite = 0
        var halted = false
        var writeError: Error?
        while let report = reports.pop() {
            switch report {
            case .result(let item, let result):
                var record = result.record
                artefacts.frame(item: item, result: result, record: &record)
                assembly[item, default: ItemAssembly()].records.append(record)
                if record.clip == nil { summary.frames += 1 }
            case .end(let item, let error, let cancelled):
                artefacts.end(item: item, completed: !cancelled)
                var entry = assembly[item, default: ItemAssembly()]
                entry.ended = true; entry.error = error; entry.cancelled = cancelled
                assembly[item] = entry
            }
            while !halted, let entry = assembly[nextToWrite], entry.ended {
                assembly[nextToWrite] = nil
                if entry.cancelled { halted = true; break }
                var records = entry.records
                if let error = entry.error {
                    records.append(ResultRecord(source: items[nextToWrite].path, model: plan.model.name, error: error))
                    summary.failures += 1
                }
                do {
                    try sink.write(item: nextToWrite, records: records)
                } catch {
                    // Keep draining the graph so every thread finishes, but write nothing more.
                    writeError = error; halted = true; admission.stop()
                    break
                }
                notify(.item(index: nextToWrite, records: records, error: entry.error))
                nextToWrite += 1
                summary.items += 1
                admission.written(nextToWrite)
                notify(.progress(done: summary.items, failed: summary.failures, total: items.count))
                if !summary.stopped && nextToWrite < items.count && shouldStop() {
                    summary.stopped = true
                    admission.stop()
                }
            }
        }
        modelDone.wait()
        decoding.wait()
        artefacts.abandonOpen()
        if halted || nextToWrite < items.count { summary.stopped = true }
        summary.mostItemsInFlight = admission.mostInFlight
        summary.mostFramesDecoded = slots.mostInUse
        summary.mostSessionsOpen = model.mostSessionsOpen
        summary.seconds = Date().timeIntervalSince(start)
        notify(.finished(summary))
        if let writeError { throw writeError }
        return summary
    }
}

/// One item's records as they arrive; complete once its end has come through the model stage (which
/// forwards it after the item's last frame).
private struct ItemAssembly {
    var records: [ResultRecord] = []
    var ended = false
    var error: String?
    var cancelled = false
}

/// A frame prepared for the model, in slot `slot` of the pool.
struct PreparedFrame {
    let item: Int
    let frameIndex: Int?
    let pts: Double?
    let slot: Int
    let width: Int
    let height: Int
    /// The size of the picture as decoded, before the model's resize: segmentation masks come back at it.
    let sourceWidth: Int
    let sourceHeight: Int
    /// The frame as decoded (before crop and normalisation), kept only when an overlay is drawn.
    let image: RGBImage?
}

/// The frame queue carries an item's frames, then its end, in order.
enum FrameQueueEntry {
    case frame(PreparedFrame)
    /// No more frames of `item`: `error` if it failed (all frames before the failure were queued),
    /// `cancelled` if decoding stopped because the run is stopping.
    case end(item: Int, error: String?, cancelled: Bool)
}

/// A frame's outcome: its record (typed outputs filled in), and what artefact sinks need.
struct FrameResult {
    var record: ResultRecord
    var image: RGBImage?
    var mask: ClassMap?
    /// The record of the clip this frame completed (video classifiers), written after the frame's.
    var clipRecord: ResultRecord?
}

/// Messages to the writer, per item in frame order: results, then the end.
private enum Report {
    case result(item: Int, FrameResult)
    case end(item: Int, error: String?, cancelled: Bool)
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

/// A fixed set of model-input buffers; a decoder waits for a free one (backpressure). A slot grows to the
/// largest frame it has held (any-size inputs); for fixed-size inputs it is allocated once.
final class SlotPool: @unchecked Sendable {
    private var buffers: [UnsafeMutableBufferPointer<Float>]
    private let free: BoundedQueue<Int>
    private let lock = NSLock()
    private var inUse = 0
    private(set) var mostInUse = 0

    init(count: Int, initialSize: Int) {
        buffers = (0..<count).map { _ in .allocate(capacity: max(initialSize, 1)) }
        free = BoundedQueue(capacity: count)
        for slot in 0..<count { free.push(slot) }
    }

    deinit { for buffer in buffers { buffer.deallocate() } }

    /// A free slot holding at least `size` values (waits for one).
    func acquire(size: Int) -> Int {
        let slot = free.pop()!
        lock.lock()
        inUse += 1
        mostInUse = max(mostInUse, inUse)
        if buffers[slot].count < size {
            buffers[slot].deallocate()
            buffers[slot] = .allocate(capacity: size)
        }
        lock.unlock()
        return slot
    }

    func release(_ slot: Int) {
        lock.lock(); inUse -= 1; lock.unlock()
        free.push(slot)
    }

    /// The first `size` values of a slot the caller holds.
    func buffer(_ slot: Int, size: Int) -> UnsafeMutableBufferPointer<Float> {
        lock.lock(); defer { lock.unlock() }
        return UnsafeMutableBufferPointer(rebasing: buffers[slot][0..<size])
    }
}

/// Decodes one item (an image, or a video's sampled frames) into slots and queues its frames and end.
private final class FrameDecoder: @unchecked Sendable {
    let items: [InputItem]
    let media: MediaKind
    let preparer: FramePreparer
    let slots: SlotPool
    let frames: BoundedQueue<FrameQueueEntry>
    let admission: Admission
    let keepsImages: Bool

    init(items: [InputItem], media: MediaKind, preparer: FramePreparer, slots: SlotPool,
         frames: BoundedQueue<FrameQueueEntry>, admission: Admission, keepsImages: Bool) {
        self.items = items; self.media = media; self.preparer = preparer
        self.slots = slots; self.frames = frames; self.admission = admission; self.keepsImages = keepsImages
    }

    func decode(item index: Int) {
        let item = items[index]
        if let listingError = item.listingError {
            frames.push(.end(item: index, error: "\(item.path): \(listingError)", cancelled: false))
            return
        }
        switch media {
        case .image: decodeImage(index, path: item.path)
        case .video(let sampling): decodeVideo(index, path: item.path, sampling: sampling)
        }
    }

    private func queue(_ prepared: RGBImage, item: Int, frameIndex: Int?, pts: Double?, source: RGBImage?,
                       sourceSize: (width: Int, height: Int)) {
        let size = prepared.pixels.count
        let slot = slots.acquire(size: size)
        preparer.normalize(prepared, into: slots.buffer(slot, size: size))
        frames.push(.frame(PreparedFrame(item: item, frameIndex: frameIndex, pts: pts, slot: slot,
                                         width: prepared.width, height: prepared.height,
                                         sourceWidth: sourceSize.width, sourceHeight: sourceSize.height,
                                         image: keepsImages ? source : nil)))
    }

    private func decodeImage(_ index: Int, path: String) {
        do {
            let picture = try preparer.decode(path: path)
            let prepared = preparer.prepare(image: picture)
            // Dense prediction: the outputs come back at the picture's own size. Otherwise the picture
            // is kept only to draw an overlay on.
            let dense = preparer.input.fixedSide == nil
            queue(prepared, item: index, frameIndex: nil, pts: nil, source: dense || keepsImages ? picture : nil,
                  sourceSize: dense ? (picture.width, picture.height) : (prepared.width, prepared.height))
        } catch {
            frames.push(.end(item: index, error: "\(error)", cancelled: false))
            return
        }
        frames.push(.end(item: index, error: nil, cancelled: false))
    }

    /// Streams the sampled frames: the reader scales them as the input asks, the preparer crops and
    /// normalises each into a slot. Frames decoded before a mid-stream failure are kept and the item ends
    /// with the error (reported as partial).
    private func decodeVideo(_ index: Int, path: String, sampling: VideoSampling) {
        let reader: VideoReader
        do {
            reader = try VideoReader(path: path, options: preparer.videoOptions)
        } catch {
            frames.push(.end(item: index, error: "\(error)", cancelled: false))
            return
        }
        if case .crop(let p) = preparer.input, let minimum = p.minimumSourceSide,
           min(reader.info.displayWidth, reader.info.displayHeight) < minimum {
            let size = "\(reader.info.displayWidth)x\(reader.info.displayHeight)"
            frames.push(.end(item: index, error: "\(path): frames are \(size), smaller than the \(minimum)x\(minimum) pixels "
                             + "(one patch) the model needs; refusing to upscale them", cancelled: false))
            return
        }
        for frame in reader.frames(sampling) {
            if admission.isStopping {
                frames.push(.end(item: index, error: nil, cancelled: true))
                return
            }
            queue(preparer.prepare(frame: frame.image), item: index, frameIndex: frame.index, pts: frame.pts,
                  source: frame.image, sourceSize: (frame.image.width, frame.image.height))
        }
        frames.push(.end(item: index, error: reader.finalError.map { "\($0)" }, cancelled: false))
    }
}

/// Pulls frames, runs the model on them (batched, or stepped through per-video sessions), maps outputs
/// to record fields, and reports each frame's result and each item's end, in queue order.
private final class ModelStage: @unchecked Sendable {
    let plan: PipelinePlan
    let items: [InputItem]
    let slots: SlotPool
    let frames: BoundedQueue<FrameQueueEntry>
    let reports: BoundedQueue<Report>
    let options: PipelineExecutor.Options
    let notify: (PipelineEvent) -> Void
    let mapper: OutputMapper
    private var sessions: [Int: any VideoSession] = [:]
    private var failedSessions: [Int: String] = [:]
    /// Per video: the first frame (index, timestamp) of its current clip and its latest frame.
    private var clipStarts: [Int: (index: Int?, pts: Double?)] = [:]
    private var lastFrames: [Int: (index: Int?, pts: Double?)] = [:]
    private(set) var mostSessionsOpen = 0

    init(plan: PipelinePlan, items: [InputItem], slots: SlotPool, frames: BoundedQueue<FrameQueueEntry>,
         reports: BoundedQueue<Report>, options: PipelineExecutor.Options, notify: @escaping (PipelineEvent) -> Void) {
        self.plan = plan; self.items = items; self.slots = slots; self.frames = frames; self.reports = reports
        self.options = options; self.notify = notify
        mapper = OutputMapper(modelName: plan.model.name, labels: plan.model.labels, postprocessing: plan.postprocessing)
    }

    func run() {
        // Up to maxBatch frames (ends ride along in order): one forward pass for stateless models; for
        // streaming models each video's frames among them step together, in order.
        let batchLimit = options.maxBatch
        var entries: [FrameQueueEntry] = []
        while let first = frames.pop() {
            entries.removeAll(keepingCapacity: true)
            entries.append(first)
            var frameCount = first.isFrame ? 1 : 0
            if frameCount > 0 {
                let deadline = Date().addingTimeInterval(options.maxWait)
                while frameCount < batchLimit, let next = frames.pop(until: deadline) {
                    entries.append(next)
                    if next.isFrame { frameCount += 1 }
                }
            }
            notify(.queueDepth(frames: frames.waiting))
            process(entries)
        }
        sessions.removeAll()
    }

    private func process(_ entries: [FrameQueueEntry]) {
        let batch = entries.compactMap(\.frame)
        var results: [FrameResult?] = []
        if !batch.isEmpty {
            let started = DispatchTime.now().uptimeNanoseconds
            results = options.lane.map { lane in lane.run { infer(batch) } } ?? infer(batch)
            notify(.batch(frames: batch.count, seconds: Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9))
        }
        var next = results.makeIterator()
        for entry in entries {
            switch entry {
            case .frame(let frame):
                if case var result?? = next.next() {
                    let clip = result.clipRecord
                    result.clipRecord = nil
                    reports.push(.result(item: frame.item, result))
                    if let clip { reports.push(.result(item: frame.item, FrameResult(record: clip))) }
                }
            case .end(let item, let error, let cancelled):
                // A clip the video's end cut short still gets its record (not when the run stopped).
                if !cancelled, failedSessions[item] == nil, let partial = sessions[item]?.finish() {
                    reports.push(.result(item: item, FrameResult(record: clipRecord(item: item, partial))))
                }
                sessions[item] = nil
                clipStarts[item] = nil
                lastFrames[item] = nil
                let sessionError = failedSessions.removeValue(forKey: item)
                reports.push(.end(item: item, error: error ?? sessionError, cancelled: cancelled))
            }
        }
    }

    /// Model inputs [N, H, W, 3] for frames of one size, copied out of their slots (which are then free).
    private func input(_ frames: ArraySlice<PreparedFrame>) -> Tensor {
        let first = frames.first!
        let size = first.width * first.height * 3
        let tensor = Tensor(uninitialized: [frames.count, first.height, first.width, 3]) { out in
            for (row, frame) in frames.enumerated() {
                (out.baseAddress! + row * size).update(from: slots.buffer(frame.slot, size: size).baseAddress!, count: size)
            }
        }
        for frame in frames { slots.release(frame.slot) }
        return tensor
    }

    private func record(_ frame: PreparedFrame) -> ResultRecord {
        ResultRecord(source: items[frame.item].path, frameIndex: frame.frameIndex, pts: frame.pts, model: plan.model.name)
    }

    /// One result per frame, nil for a frame dropped because its video's session failed.
    private func infer(_ batch: [PreparedFrame]) -> [FrameResult?] {
        switch plan.model.loaded {
        case .classifier(let classifier):
            let predictions = mapper.predictions(fromLogits: classifier(input(batch[...])))
            return zip(batch, predictions).map { frame, top in
                var record = record(frame)
                record.topK = top
                return FrameResult(record: record, image: frame.image)
            }
        case .segmenter(let segmenter):
            // Frames of different sizes cannot share a tensor: run each run of equal sizes together.
            var results: [FrameResult?] = []
            var start = 0
            while start < batch.count {
                var end = start + 1
                while end < batch.count && batch[end].width == batch[start].width
                        && batch[end].height == batch[start].height { end += 1 }
                let logits = segmenter.segment(input(batch[start..<end])).splitBatch()
                for (row, frame) in batch[start..<end].enumerated() {
                    let map = ClassMap(argmaxOf: logits[row], width: frame.sourceWidth, height: frame.sourceHeight)
                    var record = record(frame)
                    record.mask = mapper.summary(of: map)
                    results.append(FrameResult(record: record, image: frame.image, mask: map))
                }
                start = end
            }
            return results
        case .streamingVideo(let model):
            // Each video's frames in this batch step together, in order; results go back in queue order.
            var results = [FrameResult?](repeating: nil, count: batch.count)
            var order: [Int] = []
            var positions: [Int: [Int]] = [:]
            for (position, frame) in batch.enumerated() {
                if positions[frame.item] == nil { order.append(frame.item) }
                positions[frame.item, default: []].append(position)
            }
            for item in order {
                let mine = positions[item]!
                for (position, result) in zip(mine, step(model, mine.map { batch[$0] })) { results[position] = result }
            }
            return results
        case .questionAnswerer:
            // Refused when the plan is compiled.
            return batch.map { frame in
                slots.release(frame.slot)
                var record = record(frame)
                record.error = "question answering is not supported in pipelines"
                return FrameResult(record: record)
            }
        }
    }

    /// The record of a clip that ended at the video's latest frame.
    private func clipRecord(item: Int, _ clip: ClipLogits) -> ResultRecord {
        let first = clipStarts[item], last = lastFrames[item]
        var record = ResultRecord(source: items[item].path,
                                  clip: ClipSpan(index: clip.index, frames: clip.frames, firstFrame: first?.index ?? nil,
                                                 lastFrame: last?.index ?? nil, firstPTS: first?.pts ?? nil, lastPTS: last?.pts ?? nil),
                                  model: plan.model.name)
        record.topK = mapper.predictions(fromLogits: Tensor(shape: [1, clip.logits.count], data: clip.logits))[0]
        return record
    }

    /// One video's frames through its session (opened at the video's first frame), in order. A session
    /// that fails ends that video with the error; its remaining frames are dropped.
    private func step(_ model: any StreamingVideoModel, _ frames: [PreparedFrame]) -> [FrameResult?] {
        let item = frames[0].item
        let tensors = frames.map { input([$0][...]) }
        if failedSessions[item] != nil { return frames.map { _ in nil } }
        do {
            let session: any VideoSession
            if let open = sessions[item] {
                session = open
            } else {
                session = try model.openSession(prompt: .none)
                sessions[item] = session
                mostSessionsOpen = max(mostSessionsOpen, sessions.count)
            }
            let outputs = try session.step(frames: tensors)
            return zip(frames, outputs).map { frame, output in
                var record = record(frame)
                if clipStarts[item] == nil { clipStarts[item] = (frame.frameIndex, frame.pts) }
                lastFrames[item] = (frame.frameIndex, frame.pts)
                switch output {
                case .logits(let logits, let clip):
                    record.topK = mapper.predictions(fromLogits: Tensor(shape: [1, logits.count], data: logits))[0]
                    var result = FrameResult(record: record, image: frame.image)
                    if let clip {
                        result.clipRecord = clipRecord(item: item, clip)
                        clipStarts[item] = nil
                    }
                    return result
                case .mask(let map):
                    record.mask = mapper.summary(of: map)
                    return FrameResult(record: record, image: frame.image, mask: map)
                }
            }
        } catch {
            sessions[item] = nil
            failedSessions[item] = "\(items[item].path): frame \(frames[0].frameIndex ?? 0): \(error)"
            return frames.map { _ in nil }
        }
    }
}

extension FrameQueueEntry {
    var isFrame: Bool { if case .frame = self { return true } else { return false } }
    var frame: PreparedFrame? { if case .frame(let frame) = self { return frame } else { return nil } }
}
