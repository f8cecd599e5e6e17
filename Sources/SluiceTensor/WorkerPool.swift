import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Persistent worker threads that run one parallel loop at a time for `Parallel.forEachChunk`.
///
/// A forward pass is a chain of short kernels (EfficientNet-Lite0 at batch 1: ~60 parallel loops of
/// 40-400 µs each). Waking sleeping threads for each loop costs tens of microseconds on these VMs
/// (a cross-CPU wake-up is an IPI through the hypervisor), which is why `DispatchQueue.concurrentPerform`
/// scaled the depthwise layers by only 1.1-1.2x on two threads. Here the workers spin on a generation
/// counter for a short while after each loop, so the next loop of the same forward pass starts at
/// once, and only then sleep on a condition variable.
final class WorkerPool: @unchecked Sendable {
    /// Threads besides the caller; a loop runs in `workerCount + 1` parts at most.
    let workerCount: Int

    private let generation = Atomic<Int>(0)
    private let unfinished = Atomic<Int>(0)
    private let sleepers = Atomic<Int>(0)
    private let inUse = Atomic<Bool>(false)
    private var mutex = pthread_mutex_t()
    private var wake = pthread_cond_t()
    // Written by the caller before it publishes a new generation (release) and read by the workers
    // after they see it (acquire).
    private var job: ((Int) -> Void)?
    private var parts = 0
    private var stopping = false

    /// Loads of the generation counter a worker makes before it goes to sleep: about 100-200 µs here,
    /// far longer than the gap between two kernels and far shorter than the gap between two batches.
    private static let spinLimit = 1 << 16

    init(workerCount: Int) {
        self.workerCount = workerCount
        pthread_mutex_init(&mutex, nil)
        pthread_cond_init(&wake, nil)
        for index in 0..<workerCount {
            let thread = Thread { self.workerLoop(part: index + 1) }
            thread.name = "sluice-worker-\(index + 1)"
            thread.start()
        }
    }

    /// Runs `body(part)` for every part in `0..<parts` (at most `workerCount + 1`), part 0 on the
    /// calling thread, and returns when all have finished. Returns false without running anything when
    /// the pool is already running a loop (a nested or concurrent call), so the caller can run serially.
    func run(parts: Int, _ body: (Int) -> Void) -> Bool {
        precondition(parts >= 1 && parts <= workerCount + 1, "\(parts) parts for \(workerCount) workers")
        guard inUse.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged else {
            return false
        }
        defer { inUse.store(false, ordering: .releasing) }
        withoutActuallyEscaping(body) { body in
            job = body
            self.parts = parts
            unfinished.store(workerCount, ordering: .relaxed)
            publish()
            body(0)
            while unfinished.load(ordering: .acquiring) > 0 {}
            job = nil
        }
        return true
    }

    /// Waits for a loop in flight to finish, then wakes the workers for good; they exit. Only for a
    /// pool nobody will call again.
    func stop() {
        while !inUse.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged {}
        stopping = true
        publish()
    }

    private func publish() {
        generation.add(1, ordering: .sequentiallyConsistent)
        if sleepers.load(ordering: .sequentiallyConsistent) > 0 {
            pthread_mutex_lock(&mutex)
            pthread_cond_broadcast(&wake)
            pthread_mutex_unlock(&mutex)
        }
    }

    private func workerLoop(part: Int) {
        var seen = 0
        while true {
            var spins = 0
            while generation.load(ordering: .acquiring) == seen {
                spins += 1
                if spins < Self.spinLimit { continue }
                // A worker counts itself asleep before its last look at the generation, and the
                // caller bumps the generation before it counts sleepers (both sequentially
                // consistent), so a wake-up is never missed.
                pthread_mutex_lock(&mutex)
                sleepers.add(1, ordering: .sequentiallyConsistent)
                while generation.load(ordering: .sequentiallyConsistent) == seen {
                    pthread_cond_wait(&wake, &mutex)
                }
                sleepers.subtract(1, ordering: .sequentiallyConsistent)
                pthread_mutex_unlock(&mutex)
            }
            seen = generation.load(ordering: .acquiring)
            if stopping { return }
            if part < parts, let job { job(part) }
            unfinished.subtract(1, ordering: .releasing)
        }
    }
}
