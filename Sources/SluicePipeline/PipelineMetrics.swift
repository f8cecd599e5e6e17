import CoreMetrics
import Foundation

/// Run events as swift-metrics: counters of items (by outcome), frames and batches, a recorder of batch
/// sizes, a timer of forward passes and a gauge of frames waiting for the model. The factory is the
/// process's bootstrapped one (Prometheus in a server) unless one is injected (tests).
public final class PipelineMetrics: PipelineObserver, @unchecked Sendable {
    let itemsDone: Counter
    let itemsFailed: Counter
    let frames: Counter
    let batches: Counter
    let batchFrames: Recorder
    let batchLatency: CoreMetrics.Timer
    let queueDepth: Gauge

    public init(model: String, factory: MetricsFactory = MetricsSystem.factory) {
        let model = [("model", model)]
        itemsDone = Counter(label: "sluice_items_total", dimensions: model + [("outcome", "done")], factory: factory)
        itemsFailed = Counter(label: "sluice_items_total", dimensions: model + [("outcome", "failed")], factory: factory)
        frames = Counter(label: "sluice_frames_total", dimensions: model, factory: factory)
        batches = Counter(label: "sluice_batches_total", dimensions: model, factory: factory)
        batchFrames = Recorder(label: "sluice_batch_frames", dimensions: model, factory: factory)
        batchLatency = CoreMetrics.Timer(label: "sluice_batch_seconds", dimensions: model, factory: factory)
        queueDepth = Gauge(label: "sluice_queued_frames", dimensions: model, factory: factory)
    }

    public func observe(_ event: PipelineEvent) {
        switch event {
        case .batch(let count, let seconds):
            batches.increment()
            frames.increment(by: count)
            batchFrames.record(count)
            batchLatency.recordNanoseconds(Int64(seconds * 1e9))
        case .queueDepth(let count):
            queueDepth.record(count)
        case .item(_, _, let error):
            if error == nil { itemsDone.increment() } else { itemsFailed.increment() }
        case .started, .progress, .finished:
            break
        }
    }
}
