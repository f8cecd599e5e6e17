import Foundation
import SluiceTensor
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The safetensors format: an 8-byte little-endian header length N, N bytes of JSON
/// (`{"name": {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}, ..., "__metadata__": {...}}`,
/// offsets relative to the end of the header), then the tensor bytes, little-endian, C order.
public enum Safetensors {
    /// The format caps headers at 100 MB; anything larger is not a safetensors header.
    static let maximumHeaderLength = 100_000_000

    /// Reads a safetensors file (memory-mapped; only the converted float32 tensors are copied).
    public static func read(contentsOf url: URL) throws -> StateDict {
        try read(Checkpoint.mappedContents(of: url), url: url)
    }

    static func read(_ data: Data, url: URL) throws -> StateDict {
        let file = url.path
        return try data.withUnsafeBytes { raw in
            guard raw.count >= 8 else {
                throw CheckpointError.truncated(file: file, detail: "\(raw.count) bytes, shorter than the 8-byte header length")
            }
            let declaredLength = UInt64(littleEndian: raw.loadUnaligned(as: UInt64.self))
            guard declaredLength <= UInt64(maximumHeaderLength) else {
                throw CheckpointError.malformed(file: file, detail: "header length \(declaredLength) exceeds the format's 100 MB limit")
            }
            let headerLength = Int(declaredLength)
            guard raw.count - 8 >= headerLength else {
                throw CheckpointError.truncated(file: file, detail: "the header needs \(headerLength) bytes, "
                    + "the file has \(raw.count - 8) after the length field")
            }
            let header = Data(UnsafeRawBufferPointer(rebasing: raw[8..<8 + headerLength]))
            guard let json = try? JSONSerialization.jsonObject(with: header), let entries = json as? [String: Any] else {
                throw CheckpointError.malformed(file: file, detail: "the header is not a JSON object")
            }

            let dataStart = 8 + headerLength
            let dataSize = raw.count - dataStart
            var stateDict = StateDict(source: url)
            var layout: [(key: String, dtype: CheckpointDType, shape: [Int], begin: Int)] = []
            for (key, value) in entries {
                if key == "__metadata__" {
                    for (name, text) in value as? [String: Any] ?? [:] {
                        if let text = text as? String { stateDict.metadata[name] = text }
                    }
                    continue
                }
                guard let info = value as? [String: Any], let dtypeName = info["dtype"] as? String,
                      let shape = intArray(info["shape"]), let offsets = intArray(info["data_offsets"]),
                      offsets.count == 2, shape.allSatisfy({ $0 >= 0 }) else {
                    throw CheckpointError.malformed(file: file, detail: "tensor '\(key)' lacks dtype, shape or data_offsets")
                }
                guard let dtype = CheckpointDType(rawValue: dtypeName) else {
                    throw CheckpointError.unsupportedDType(file: file, key: key, dtype: dtypeName)
                }
                let (begin, end) = (offsets[0], offsets[1])
                guard begin >= 0, begin <= end else {
                    throw CheckpointError.malformed(file: file, detail: "tensor '\(key)' has data_offsets [\(begin), \(end)]")
                }
                guard end <= dataSize else {
                    throw CheckpointError.truncated(file: file, detail: "tensor '\(key)' ends at data byte \(end), "
                        + "the file holds \(dataSize) data bytes")
                }
                let (byteCount, overflow) = (checkedElementCount(shape) ?? Int.max).multipliedReportingOverflow(by: dtype.byteWidth)
                guard !overflow, byteCount == end - begin else {
                    throw CheckpointError.malformed(file: file, detail: "tensor '\(key)' is \(dtypeName) \(shape) "
                        + "but spans \(end - begin) bytes")
                }
                layout.append((key, dtype, shape, begin))
            }
            // JSON objects are unordered; the data order is the order the writer saved the tensors in.
            layout.sort { ($0.begin, $0.key) < ($1.begin, $1.key) }
            for entry in layout {
                let tensor: Tensor
                if let base = raw.baseAddress, (checkedElementCount(entry.shape) ?? 0) > 0 {
                    tensor = ElementConversion.makeTensor(dtype: entry.dtype, storage: base + dataStart + entry.begin,
                                                          offset: 0, shape: entry.shape)
                } else {
                    tensor = Tensor(zeros: entry.shape)
                }
                stateDict.set(tensor, forKey: entry.key, dtype: entry.dtype)
            }
            return stateDict
        }
    }

    private static func intArray(_ value: Any?) -> [Int]? {
        guard let numbers = value as? [Any] else { return nil }
        let ints = numbers.compactMap { ($0 as? Int) ?? ($0 as? NSNumber)?.intValue }
        return ints.count == numbers.count ? ints : nil
    }

    // MARK: - Writing

    /// Writes `stateDict`'s tensors in order as F32, with `metadata` as `__metadata__`.
    public static func write(_ stateDict: StateDict, metadata: [String: String] = [:], to url: URL) throws {
        try write(stateDict.orderedTensors.map { ($0.key, $0.tensor) }, metadata: metadata, to: url)
    }

    /// Writes float32 tensors in the given order, readable by the Python `safetensors` package:
    /// compact JSON header padded with spaces so the data starts 8-byte aligned. The file is written
    /// beside `url` and renamed into place, so a failed write never leaves a half file under `url`.
    public static func write(_ tensors: [(String, Tensor)], metadata: [String: String] = [:], to url: URL) throws {
        var seen = Set<String>(["__metadata__"])
        for (key, _) in tensors {
            guard seen.insert(key).inserted else { throw CheckpointError.duplicateKey(key: key, file: url.path) }
        }
        var header = "{"
        var fields: [String] = []
        if !metadata.isEmpty {
            let pairs = metadata.sorted { $0.key < $1.key }.map { "\(JSONText.quoted($0.key)):\(JSONText.quoted($0.value))" }
            fields.append("\"__metadata__\":{" + pairs.joined(separator: ",") + "}")
        }
        var offset = 0
        for (key, tensor) in tensors {
            let byteCount = tensor.count * 4
            let shape = tensor.shape.map(String.init).joined(separator: ",")
            fields.append("\(JSONText.quoted(key)):{\"dtype\":\"F32\",\"shape\":[\(shape)],"
                + "\"data_offsets\":[\(offset),\(offset + byteCount)]}")
            offset += byteCount
        }
        header += fields.joined(separator: ",") + "}"
        var headerBytes = Array(header.utf8)
        headerBytes += [UInt8](repeating: 0x20, count: (8 - (8 + headerBytes.count) % 8) % 8)

        do {
            try AtomicFile.write(url) { temporary in
                guard FileManager.default.createFile(atPath: temporary.path, contents: nil) else {
                    throw CheckpointError.writeFailed(file: url.path, reason: "cannot create \(temporary.path)")
                }
                let handle = try FileHandle(forWritingTo: temporary)
                defer { try? handle.close() }
                var lengthField = UInt64(headerBytes.count).littleEndian
                try handle.write(contentsOf: Data(bytes: &lengthField, count: 8))
                try handle.write(contentsOf: headerBytes)
                for (_, tensor) in tensors where tensor.count > 0 {
                    try tensor.data.withUnsafeBytes { bytes in
                        // No copy: the handle writes synchronously from the array's storage.
                        try handle.write(contentsOf: Data(bytesNoCopy: UnsafeMutableRawPointer(mutating: bytes.baseAddress!),
                                                          count: bytes.count, deallocator: .none))
                    }
                }
                try handle.synchronize()
            }
        } catch let error as CheckpointError {
            throw error
        } catch {
            throw CheckpointError.writeFailed(file: url.path, reason: "\(error)")
        }
    }
}
