import Foundation
import ZIPFoundation

/// The zip container shared by torch's zip checkpoints and NumPy's .npz: entries indexed once by path
/// (ZIPFoundation's `archive[path]` scans the central directory on every lookup) and extracted whole.
struct CheckpointZip {
    let archive: Archive
    let file: String
    /// File entries in central-directory order (the order the writer added them).
    let entries: [Entry]
    private let entryByPath: [String: Entry]

    init(url: URL) throws {
        file = url.path
        do {
            archive = try Archive(url: url, accessMode: .read)
        } catch Archive.ArchiveError.missingEndOfCentralDirectoryRecord {
            throw CheckpointError.truncated(file: url.path, detail: "zip archive without its end-of-central-directory "
                + "record (cut short, or not completely written)")
        } catch {
            throw CheckpointError.malformed(file: url.path, detail: "unreadable zip archive (\(error))")
        }
        entries = archive.filter { $0.type == .file }
        var byPath: [String: Entry] = [:]
        for entry in entries where byPath[entry.path] == nil { byPath[entry.path] = entry }
        entryByPath = byPath
    }

    subscript(path: String) -> Entry? { entryByPath[path] }

    /// The entry's uncompressed bytes. CRC checking can be skipped for large stored tensor data,
    /// where it would cost more than the copy; structure errors are still caught by the sizes.
    func contents(of entry: Entry, checkCRC: Bool = true) throws -> Data {
        var data = Data(capacity: Int(clamping: entry.uncompressedSize))
        do {
            _ = try archive.extract(entry, bufferSize: 1 << 20, skipCRC32: !checkCRC) { data.append($0) }
        } catch {
            throw CheckpointError.malformed(file: file, detail: "cannot extract zip entry '\(entry.path)' (\(error))")
        }
        guard data.count == Int(clamping: entry.uncompressedSize) else {
            throw CheckpointError.truncated(file: file, detail: "zip entry '\(entry.path)' holds \(data.count) of "
                + "\(entry.uncompressedSize) bytes")
        }
        return data
    }
}
