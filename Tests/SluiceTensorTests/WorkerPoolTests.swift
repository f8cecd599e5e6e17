import Foundation
import XCTest
import SluiceTensor
import Synchronization

/// `Parallel.forEachChunk` runs on a pool of spinning worker threads: every index exactly once, nested
/// and concurrent loops run serially instead of deadlocking, and workers that fell asleep wake up.
final class WorkerPoolTests: XCTestCase {
    /// Counts how often each index of a loop ran.
    final class Visits: @unchecked Sendable {
        let counts: UnsafeMutableBufferPointer<Int>
        init(_ count: Int) { counts = .allocate(capacity: count); counts.initialize(repeating: 0) }
        deinit { counts.deallocate() }
        var array: [Int] { Array(counts) }
    }

    override func tearDown() { Parallel.configure(threads: nil) }

    func testEveryIndexRunsOnceForManySizesAndThreadCounts() {
        for threads in [1, 2, 3, 4] {
            Parallel.configure(threads: threads)
            for count in [1, 2, 3, 5, 17, 100, 1001] {
                for minChunk in [1, 4, 64] {
                    let visits = Visits(count)
                    Parallel.forEachChunk(count, minChunk: minChunk) { range in
                        for i in range { visits.counts[i] += 1 }
                    }
                    XCTAssertEqual(visits.array, [Int](repeating: 1, count: count),
                                   "threads \(threads), count \(count), minChunk \(minChunk)")
                }
            }
        }
    }

    func testLoopsRunOnSeveralThreads() {
        Parallel.configure(threads: 2)
        let seen = Mutex<Set<String>>([])
        for _ in 0..<50 {
            Parallel.forEachChunk(2) { _ in
                // Long enough that the caller cannot take both parts before the worker starts.
                usleep(1000)
                let name = "\(pthread_self())"
                seen.withLock { _ = $0.insert(name) }
            }
        }
        XCTAssertEqual(seen.withLock { $0.count }, 2, "two parts of a loop ran on two threads")
    }

    func testNestedLoopsRunSeriallyInsideTheOuterOne() {
        Parallel.configure(threads: 2)
        let visits = Visits(8 * 50)
        Parallel.forEachChunk(8) { outer in
            for i in outer {
                Parallel.forEachChunk(50) { inner in
                    for j in inner { visits.counts[i * 50 + j] += 1 }
                }
            }
        }
        XCTAssertEqual(visits.array, [Int](repeating: 1, count: 400))
    }

    func testConcurrentCallersEachGetTheirLoopDone() {
        Parallel.configure(threads: 2)
        let callers = 4, loops = 300, count = 37
        let visits = (0..<callers).map { _ in Visits(count) }
        DispatchQueue.concurrentPerform(iterations: callers) { caller in
            for _ in 0..<loops {
                Parallel.forEachChunk(count) { range in
                    for i in range { visits[caller].counts[i] += 1 }
                }
            }
        }
        for caller in 0..<callers {
            XCTAssertEqual(visits[caller].array, [Int](repeating: loops, count: count), "caller \(caller)")
        }
    }

    func testWorkersThatWentToSleepWakeUp() {
        Parallel.configure(threads: 2)
        for round in 0..<5 {
            // Far past the spin window: the worker is blocked on its condition variable.
            usleep(50_000)
            let visits = Visits(64)
            Parallel.forEachChunk(64) { range in
                for i in range { visits.counts[i] += 1 }
            }
            XCTAssertEqual(visits.array, [Int](repeating: 1, count: 64), "round \(round)")
        }
    }

    func testReconfiguringReplacesThePool() {
        for threads in [2, 4, 1, 3, 2] {
            Parallel.configure(threads: threads)
            XCTAssertEqual(Parallel.threads, threads)
            let visits = Visits(1000)
            Parallel.forEachChunk(1000) { range in for i in range { visits.counts[i] += 1 } }
            XCTAssertEqual(visits.array, [Int](repeating: 1, count: 1000), "\(threads) threads")
        }
    }
}
