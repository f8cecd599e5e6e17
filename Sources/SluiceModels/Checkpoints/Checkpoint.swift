import Foundation

/// Reads any supported weights file into a `StateDict`, choosing the reader from the file's leading
/// bytes (never its extension: `.pth`, `.pt`, `.bin` and `.ckpt` are used for every torch format).
public enum Checkpoint {
    public enum Format: String, Sendable, CaseIterable {
        case safetensors
        /// torch.save, zip format (torch >= 1.6).
        case torchZip
        /// torch.save, legacy pickle-stream format.
        case torchLegacy
        case npz
        case npy
    }

    /// Loads every tensor of the checkpoint at `url` as float32, in file order.
    public static func load(_ url: URL) throws -> StateDict {
        let data = try mappedContents(of: url)
        switch try format(of: data, url: url) {
        case .safetensors: return try Safetensors.read(data, url: url)
        case .torchLegacy: return try TorchCheckpoint.loadLegacy(data, url: url)
        case .npy: return try NumpyArchive.loadNPY(data, url: url)
        case .torchZip, .npz:
            let zip = try CheckpointZip(url: url)
            return zip.entries.contains(where: { $0.path.hasSuffix("data.pkl") })
                ? try TorchCheckpoint.loadZip(zip, url: url)
                : try NumpyArchive.loadNPZ(zip, url: url)
        }
    }

    /// The format of the file at `url`, from its magic bytes (for zips, from the entry names).
    public static func format(of url: URL) throws -> Format {
        let data = try mappedContents(of: url)
        let format = try format(of: data, url: url)
        guard format == .npz else { return format }
        let zip = try CheckpointZip(url: url)
        return zip.entries.contains(where: { $0.path.hasSuffix("data.pkl") }) ? .torchZip : .npz
    }

    /// The file memory-mapped: large checkpoints are read in place, and only converted tensors copied.
    static func mappedContents(of url: URL) throws -> Data {
        do {
            return try Data(contentsOf: url, options: .alwaysMapped)
        } catch {
            let reason = (error as NSError).localizedFailureReason ?? (error as NSError).localizedDescription
            throw CheckpointError.unreadable(file: url.path, reason: reason)
        }
    }

    /// Zips are reported as `.npz` here; `load` tells torch zips apart by their `data.pkl` entry.
    private static func format(of data: Data, url: URL) throws -> Format {
        let head = [UInt8](data.prefix(32))
        guard !head.isEmpty else { throw CheckpointError.truncated(file: url.path, detail: "the file is empty") }
        if head.starts(with: [0x50, 0x4b, 0x03, 0x04]) || head.starts(with: [0x50, 0x4b, 0x05, 0x06]) {
            return .npz
        }
        if head.starts(with: [0x93] + Array("NUMPY".utf8)) { return .npy }
        if isLegacyTorch(head) { return .torchLegacy }
        // safetensors: a plausible little-endian header length, then the JSON header's '{'.
        if head.count >= 9, head[8] == UInt8(ascii: "{") {
            let headerLength = head[0..<8].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
            if headerLength >= 2, headerLength <= UInt64(Safetensors.maximumHeaderLength) { return .safetensors }
        }
        throw CheckpointError.unknownFormat(file: url.path, detail: describeUnknown(data))
    }

    /// Legacy torch files start with the pickled magic number: PROTO n, a FRAME header from protocol 4
    /// on, then LONG1 with the 10 magic bytes.
    private static func isLegacyTorch(_ head: [UInt8]) -> Bool {
        guard head.count >= 2, head[0] == 0x80 else { return false }
        var position = 2
        if head.count > position, head[position] == 0x95 { position += 9 }
        guard head.count >= position + 12, head[position] == 0x8a, head[position + 1] == 0x0a else { return false }
        return Array(head[position + 2..<position + 12]) == TorchCheckpoint.legacyMagic
    }

    /// What the unrecognised file starts with, and what it probably is.
    private static func describeUnknown(_ data: Data) -> String {
        let head = [UInt8](data.prefix(8))
        let text = [UInt8](data.prefix(24))
        let hex = head.map { String(format: "%02x", $0) }.joined(separator: " ")
        var hint = ""
        if data.count > 262, data[data.startIndex + 257..<data.startIndex + 262].elementsEqual("ustar".utf8) {
            hint = "; a tar archive: torch's pre-0.1.10 tar checkpoints are not supported"
        } else if head.first == 0x80 {
            hint = "; a Python pickle that is not a torch checkpoint"
        } else if text.allSatisfy({ (0x20...0x7e).contains($0) || $0 == 0x0a || $0 == 0x0d || $0 == 0x09 }) {
            let preview = String(decoding: text, as: UTF8.self).replacingOccurrences(of: "\n", with: " ")
            hint = "; looks like text: \"" + preview + (data.count > text.count ? "…\"" : "\"")
        }
        return "starts with \(hex)\(hint)"
    }
}
