import Foundation

/// A blocking first-in first-out queue with a fixed capacity: the link between two pipeline stages.
/// `push` waits while the queue is full (backpressure), `pop` waits while it is empty; after `close()`
/// pushes are refused and pops drain what is left, then return nil.
final class BoundedQueue<Element>: @unchecked Sendable {
    private let condition = NSCondition()
    private var storage: [Element?]
    private var head = 0
    private var count = 0
    private var closed = false
    let capacity: Int

    init(capacity: Int) {
        precondition(capacity > 0)
        self.capacity = capacity
        storage = Array(repeating: nil, count: capacity)
    }

    /// Waits for room; returns false (dropping the element) when the queue is closed.
    @discardableResult
    func push(_ element: Element) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        while count == capacity && !closed { condition.wait() }
        if closed { return false }
        storage[(head + count) % capacity] = element
        count += 1
        condition.broadcast()
        return true
    }

    /// Waits for an element; nil once the queue is closed and empty.
    func pop() -> Element? { pop(until: nil) }

    /// Waits for an element until `deadline` (nil: no limit); nil on timeout or once the queue is closed
    /// and empty.
    func pop(until deadline: Date?) -> Element? {
        condition.lock()
        defer { condition.unlock() }
        while count == 0 && !closed {
            // Not wait(until: .distantFuture): on Linux that overflows the timespec and traps.
            if let deadline {
                if !condition.wait(until: deadline) { break }
            } else {
                condition.wait()
            }
        }
        guard count > 0 else { return nil }
        let element = storage[head]
        storage[head] = nil
        head = (head + 1) % capacity
        count -= 1
        condition.broadcast()
        return element
    }

    func close() {
        condition.lock()
        closed = true
        condition.broadcast()
        condition.unlock()
    }

    /// Elements waiting now.
    var waiting: Int {
        condition.lock()
        defer { condition.unlock() }
        return count
    }

    var isClosedAndEmpty: Bool {
        condition.lock()
        defer { condition.unlock() }
        return closed && count == 0
    }
}
