import Foundation
import SluicePipeline

/// Progress on stderr, from the run's events: a redrawn bar with items/s on a terminal, plain periodic
/// lines otherwise.
final class ProgressBar: PipelineObserver, @unchecked Sendable {
    private let total: Int
    private let label: String
    private let interactive: Bool
    private let start = Date()
    private var lastDraw = Date.distantPast
    private var lastLine = Date()

    init(total: Int, label: String) {
        self.total = total
        self.label = label
        interactive = isatty(STDERR_FILENO) == 1
    }

    func observe(_ event: PipelineEvent) {
        if case .progress(let done, let failed, _) = event { update(done: done, failed: failed) }
    }

    func update(done: Int, failed: Int) {
        let now = Date()
        let elapsed = now.timeIntervalSince(start)
        let rate = elapsed > 0 ? Double(done) / elapsed : 0
        if interactive {
            guard now.timeIntervalSince(lastDraw) > 0.1 || done == total else { return }
            lastDraw = now
            let width = 30
            let filled = total > 0 ? width * done / total : width
            let bar = String(repeating: "█", count: filled) + String(repeating: "░", count: width - filled)
            let eta = rate > 0 ? Double(total - done) / rate : 0
            let text = String(format: "\r%@ %@ %d/%d  %d failed  %.1f %@/s  ETA %.0fs ",
                              label, bar, done, total, failed, rate, label, eta)
            FileHandle.standardError.write(Data(text.utf8))
            if done == total { FileHandle.standardError.write(Data("\n".utf8)) }
        } else if now.timeIntervalSince(lastLine) >= 10 {
            lastLine = now
            let eta = rate > 0 ? Double(total - done) / rate : 0
            let text = String(format: "progress: %d/%d %@, %d failed, %.1f %@/s, ETA %.0fs\n",
                              done, total, label, failed, rate, label, eta)
            FileHandle.standardError.write(Data(text.utf8))
        }
    }
}
