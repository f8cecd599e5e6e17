import CoreMetrics
import Foundation
import SluiceMedia
import SluiceModels
import SluicePipeline
import SluiceTensor

/// The models this process has loaded, each once, shared by job runs and interactive requests.
final class ModelCache: @unchecked Sendable {
    let store: ModelStore
    private let lock = NSLock()
    private var loaded: [String: (ModelCard, LoadedModel)] = [:]
    private let loadTime: CoreMetrics.Timer

    init(store: ModelStore) {
        self.store = store
        loadTime = CoreMetrics.Timer(label: "sluice_model_load_seconds")
    }

    /// The model named `name` (from `weights`, else the model store), loading it on first use. Loads
    /// run one at a time, so two requests for a new model load it once.
    func load(_ name: String, weights: String? = nil) throws -> (ModelCard, LoadedModel) {
        let key = name + "\u{0}" + (weights ?? "")
        return try lock.withLock {
            if let found = loaded[key] { return found }
            let started = DispatchTime.now().uptimeNanoseconds
            let model = try store.load(name, weights: weights.map { URL(fileURLWithPath: $0) })
            loadTime.recordNanoseconds(Int64(DispatchTime.now().uptimeNanoseconds - started))
            loaded[key] = model
            return model
        }
    }

    /// Loads off the caller's task (a load takes seconds; request tasks share a few threads).
    func load(_ name: String, weights: String? = nil) async throws -> (ModelCard, LoadedModel) {
        try await withCheckedThrowingContinuation { continuation in
            DispatchQueue.global().async { continuation.resume(with: Result { try self.load(name, weights: weights) }) }
        }
    }

    var names: [String] { lock.withLock { loaded.values.map(\.0.name) }.sorted() }
}

/// Interactive classification: requests' images wait for the lane, and when it comes to them every
/// image waiting for the same model goes through in one forward pass (up to `batch`), as Triton's
/// dynamic batcher does. Decoding and resizing happen in the request's task, before waiting.
final class ClassifyBatcher: @unchecked Sendable {
    let card: ModelCard
    let classifier: any ImageClassifier
    let preparer: FramePreparer
    let lane: InferenceLane
    let batch: Int
    private let lock = NSLock()
    private var pending: [(image: RGBImage, waiter: Waiter<[Float]>)] = []
    private var scheduled = false

    init(card: ModelCard, classifier: any ImageClassifier, lane: InferenceLane, batch: Int) {
        self.card = card; self.classifier = classifier; self.lane = lane; self.batch = max(1, batch)
        preparer = FramePreparer(card.input.image)
    }

    /// The logits for one prepared image.
    func logits(for image: RGBImage, timeout: Double) async throws -> [Float] {
        let waiter = Waiter<[Float]>()
        let schedule: Bool = lock.withLock {
            pending.append((image, waiter))
            if scheduled { return false }
            scheduled = true
            return true
        }
        if schedule { lane.enqueue { [self] in runPending() } }
        return try await waiter.wait(timeout: timeout)
    }

    /// On the lane: up to `batch` waiting images in one pass; schedules another turn for the rest, so
    /// that job batches queued meanwhile get their turn in between.
    private func runPending() {
        let taken: [(image: RGBImage, waiter: Waiter<[Float]>)] = lock.withLock {
            let taken = Array(pending.prefix(batch))
            pending.removeFirst(taken.count)
            return taken
        }
        let live = taken.filter { !$0.waiter.isFinished }
        if let first = live.first {
            let side = first.image.width * first.image.height * 3
            let input = Tensor(uninitialized: [live.count, first.image.height, first.image.width, 3]) { out in
                for (row, entry) in live.enumerated() {
                    preparer.normalize(entry.image, into: UnsafeMutableBufferPointer(rebasing: out[(row * side)..<((row + 1) * side)]))
                }
            }
            let logits = classifier(input)
            let classes = logits.shape.last ?? 0
            logits.data.withUnsafeBufferPointer { all in
                for (row, entry) in live.enumerated() {
                    entry.waiter.finish(.success(Array(all[(row * classes)..<((row + 1) * classes)])))
                }
            }
        }
        let more: Bool = lock.withLock {
            if pending.isEmpty { scheduled = false; return false }
            return true
        }
        if more { lane.enqueue { [self] in runPending() } }
    }
}

/// A result that arrives once, from another thread; waiting for it gives up after a timeout.
final class Waiter<T: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var result: Result<T, any Error>?
    private var continuation: CheckedContinuation<T, any Error>?
    private var timer: DispatchWorkItem?

    var isFinished: Bool { lock.withLock { result != nil } }

    func finish(_ value: Result<T, any Error>) {
        let (waiting, timer): (CheckedContinuation<T, any Error>?, DispatchWorkItem?) = lock.withLock {
            guard result == nil else { return (nil, nil) }
            result = value
            defer { continuation = nil; self.timer = nil }
            return (continuation, self.timer)
        }
        // The timer is cancelled, not left to hold the waiter (and its result) until it fires.
        timer?.cancel()
        waiting?.resume(with: value)
    }

    func wait(timeout: Double) async throws -> T {
        let timer = DispatchWorkItem { [weak self] in
            self?.finish(.failure(APIError(status: .serviceUnavailable, code: "timeout",
                                           message: "no model time within \(Int(timeout)) s; try again later",
                                           headers: [.retryAfter: "5"])))
        }
        let armed = lock.withLock {
            guard result == nil else { return false }
            self.timer = timer
            return true
        }
        if armed { DispatchQueue.global().asyncAfter(deadline: .now() + timeout, execute: timer) }
        return try await withCheckedThrowingContinuation { continuation in
            let ready: Result<T, any Error>? = lock.withLock {
                if let result { return result }
                self.continuation = continuation
                return nil
            }
            if let ready { continuation.resume(with: ready) }
        }
    }
}
