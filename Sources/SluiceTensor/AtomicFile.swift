import Foundation

/// Replaces a file the user keeps through rename(2): everything is written to a temporary file in the
/// target's folder (same file system), which is then renamed over the target. A reader sees the old
/// file or the whole new one, never half of one, and a killed writer leaves only the hidden temporary.
public struct AtomicFile: Sendable {
    public let target: URL
    /// `.NAME.PID-TOKEN.partial.EXT` beside the target: one per writer, even two in one process; the
    /// extension stays last, for writers that pick the format from it (FFmpeg's muxers, the record sinks).
    public let temporary: URL

    public init(replacing target: URL) {
        self.target = target
        let (prefix, suffix) = Self.temporaryAffixes(of: target)
        temporary = target.deletingLastPathComponent()
            .appendingPathComponent("\(prefix)\(ProcessInfo.processInfo.processIdentifier)-\(UInt32.random(in: 0...UInt32.max))\(suffix)")
    }

    /// What every temporary of `target` starts and ends with, around its writer's `PID-TOKEN`.
    private static func temporaryAffixes(of target: URL) -> (prefix: String, suffix: String) {
        let ext = target.pathExtension.isEmpty ? "" : "." + target.pathExtension
        return (".\(target.deletingPathExtension().lastPathComponent).", ".partial\(ext)")
    }

    /// Renames the temporary over the target; on failure the temporary is removed.
    public func commit() throws {
        guard rename(temporary.path, target.path) == 0 else {
            let reason = String(cString: strerror(errno))
            discard()
            throw AtomicFileError(path: target.path, reason: reason)
        }
    }

    /// Removes the temporary (a write that failed).
    public func discard() { unlink(temporary.path) }

    /// Removes temporaries of `target` left by writers that were killed (their process is gone), so
    /// repeated kills do not pile them up. Returns how many it removed.
    @discardableResult
    public static func removeStaleTemporaries(of target: URL) -> Int {
        let folder = target.deletingLastPathComponent()
        let (prefix, suffix) = temporaryAffixes(of: target)
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: folder.path) else { return 0 }
        var removed = 0
        for entry in entries where entry.hasPrefix(prefix) && entry.hasSuffix(suffix) && entry.count > prefix.count + suffix.count {
            let writer = entry.dropFirst(prefix.count).dropLast(suffix.count)   // PID-TOKEN
            guard let pid = Int32(writer.split(separator: "-").first ?? ""), pid > 0 else { continue }
            if kill(pid, 0) != 0 && errno == ESRCH, unlink(folder.appendingPathComponent(entry).path) == 0 { removed += 1 }
        }
        return removed
    }

    /// Writes `target` through `write`, which is given the temporary to write; commits when it returns
    /// and discards the temporary when it throws.
    @discardableResult
    public static func write<T>(_ target: URL, _ write: (URL) throws -> T) throws -> T {
        let file = AtomicFile(replacing: target)
        let result: T
        do { result = try write(file.temporary) } catch { file.discard(); throw error }
        try file.commit()
        return result
    }
}

public struct AtomicFileError: Error, CustomStringConvertible {
    public var path: String
    public var reason: String
    public var description: String { "\(path): cannot replace the file: \(reason)" }
}
