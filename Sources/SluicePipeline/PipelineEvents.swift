import Foundation

/// What a pipeline run tells the outside while it goes: the CLI's progress bar, metrics, a server's
/// progress stream. Observers are called on the executor's threads (item events on the writer thread,
/// batch events on the model thread) and must return quickly.
public enum PipelineEvent: Sendable {
    /// The run starts with this many items.
    case started(items: Int)
    /// A forward pass (or one session step) ran over `frames` frames in `seconds`.
    case batch(frames: Int, seconds: Double)
    /// Decoded frames waiting for the model right after a batch was taken.
    case queueDepth(frames: Int)
    /// Item `index` was written (in input order) with its records; `error` says why it failed.
    case item(index: Int, records: [ResultRecord], error: String?)
    /// Running totals after each written item.
    case progress(done: Int, failed: Int, total: Int)
    /// The run ended (all items, or stopped early).
    case finished(PipelineExecutor.Summary)
}

public protocol PipelineObserver: AnyObject, Sendable {
    func observe(_ event: PipelineEvent)
}

/// Calls a closure for each event (tests, small adapters).
public final class ClosureObserver: PipelineObserver, @unchecked Sendable {
    private let body: (PipelineEvent) -> Void
    private let lock = NSLock()
    public init(_ body: @escaping (PipelineEvent) -> Void) { self.body = body }
    public func observe(_ event: PipelineEvent) { lock.lock(); defer { lock.unlock() }; body(event) }
}
