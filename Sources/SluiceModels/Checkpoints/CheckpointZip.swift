import Foundation
import ZIPFoundation

/// The zip container shared by torch's zip checkpoints and NumPy's .npz: entries indexed once by path
/// (ZIPFoundation's `archive[path]` scans the central directory on every lookup) and extracted whole.
struct CheckpointZip {
    let archive: Archive
    let file: String
    /// The archive's size in bytes: no entry's data can be larger.
    let fileSize: UInt64
    /// File entries in central-directory order (the order the writer added them).
    let entries: [Entry]
    private let entryByPath: [String: Entry]

    init(url: URL) throws {
        file = url.path
        let bytes = try Checkpoint.mappedContents(of: url)
        fileSize = UInt64(bytes.count)
        try ZipDirectoryCheck.check(bytes, file: url.path)
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
    /// The sizes come from the central directory, written by whoever made the file: they are checked
    /// against the archive's size and deflate's largest expansion (1032:1) before any buffer is reserved.
    func contents(of entry: Entry, checkCRC: Bool = true) throws -> Data {
        let (stored, claimed) = (entry.compressedSize, entry.uncompressedSize)
        if stored > fileSize {
            throw CheckpointError.truncated(file: file, detail: "zip entry '\(entry.path)' claims \(stored) stored bytes, "
                + "the file holds \(fileSize)")
        }
        let expansion = entry.isCompressed ? stored.multipliedReportingOverflow(by: 1032).partialValue + 64 : stored
        if claimed > expansion {
            throw CheckpointError.malformed(file: file, detail: "zip entry '\(entry.path)' claims \(claimed) bytes from "
                + "\(stored) \(entry.isCompressed ? "deflated" : "stored") bytes")
        }
        var data = Data(capacity: Int(clamping: claimed))
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
