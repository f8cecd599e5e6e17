import COpenBLAS

/// Carries a value (typically a raw pointer into a buffer that worker threads write disjoint parts of)
/// across the `@Sendable` boundary of a parallel loop.
public struct UnsafeSendable<Value>: @unchecked Sendable {
    public let value: Value
    public init(_ value: Value) { self.value = value }
}

/// Work splitting for the numeric kernels. The thread count applies to Sluice's own kernels and to
/// OpenBLAS alike, so "2 threads" means the same thing everywhere.
public enum Parallel {
    nonisolated(unsafe) private static var configuredThreads = 1
    nonisolated(unsafe) private static var initialised = false
    nonisolated(unsafe) private static var pool: WorkerPool?

    /// Number of worker threads the kernels use (default: all cores).
    public static var threads: Int {
        if !initialised { configure(threads: nil) }
        return configuredThreads
    }

    /// Sets the thread count for Sluice kernels and OpenBLAS; nil (or 0) means all cores. The command
    /// line resolves `--threads` and SLUICE_THREADS into this; the library reads no environment.
    /// Call before starting work, not while kernels run.
    public static func configure(threads requested: Int?) {
        var count = requested ?? 0
        if count <= 0 { count = max(1, activeProcessorCount()) }
        configuredThreads = count
        initialised = true
        if pool?.workerCount != count - 1 {
            pool?.stop()
            pool = count > 1 ? WorkerPool(workerCount: count - 1) : nil
        }
        Memory.keepLargeBlocks
        // Sluice splits GEMMs into tiles across its own threads (BLAS.gemm with an epilogue), so
        // OpenBLAS runs each tile single-threaded instead of spinning up its own pool.
        openblas_set_num_threads(1)
    }

    /// Runs `body(range)` over `0..<count` split into contiguous chunks, one per thread (or fewer when
    /// `count` is small). `minChunk` keeps tiny loops on the calling thread.
    public static func forEachChunk(_ count: Int, minChunk: Int = 1,
                                    _ body: @Sendable (Range<Int>) -> Void) {
        guard count > 0 else { return }
        let workers = min(threads, max(1, count / max(1, minChunk)))
        // A loop started from inside another (or while another thread's loop runs) goes serially.
        guard workers > 1, let pool, pool.run(parts: workers, { worker in
            let start = count * worker / workers, end = count * (worker + 1) / workers
            if start < end { body(start..<end) }
        }) else {
            body(0..<count)
            return
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif
import Foundation

private func activeProcessorCount() -> Int { ProcessInfo.processInfo.activeProcessorCount }
