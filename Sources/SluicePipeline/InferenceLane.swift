import Foundation

/// Where forward passes run when several users share one process: one pass at a time, in the order
/// they asked. A server gives its job runs and its interactive requests the same lane, so they take
/// turns batch by batch (a long job cannot starve a request, and two passes never fight over the cores
/// that each of them already splits its work across).
public final class InferenceLane: @unchecked Sendable {
    private let queue = DispatchQueue(label: "sluice.lane")
    private let lock = NSLock()
    private var waiting = 0
    /// Told the number of passes waiting or running whenever it changes (a metrics gauge).
    private let onDepthChange: @Sendable (Int) -> Void

    public init(onDepthChange: @escaping @Sendable (Int) -> Void = { _ in }) {
        self.onDepthChange = onDepthChange
    }

    /// Runs `body` on the lane and waits for it (the pipeline's model thread).
    public func run<T>(_ body: () throws -> T) rethrows -> T {
        adjust(+1)
        defer { adjust(-1) }
        return try queue.sync(execute: body)
    }

    /// Queues `body` on the lane and returns at once.
    public func enqueue(_ body: @escaping @Sendable () -> Void) {
        adjust(+1)
        queue.async { [self] in body(); adjust(-1) }
    }

    private func adjust(_ change: Int) {
        let depth = lock.withLock { waiting += change; return waiting }
        onDepthChange(depth)
    }
}
