import Crypto
import Foundation
import Hummingbird
import MultipartKit
import NIOCore

/// Uploaded files, kept under `uploads/HASH/NAME`: HASH is 16 hex digits of the SHA-256 of the content
/// (of all the request's files, for a multipart job), so the same upload lands in the same place and a
/// job that names it is the same job. What a file is comes from its bytes, not its name.
struct Uploads: Sendable {
    let folder: URL
    let maxBytes: Int

    struct Stored: Encodable, Sendable {
        /// Relative to the server's data folder, as a pipeline names it (`images: uploads/…/cat.jpg`).
        var path: String
        var name: String
        var kind: String
        var bytes: Int
        var sha256: String
    }

    /// A file being received: written to a temporary file, hashed and measured as it comes.
    final class Incoming {
        let temporary: URL
        let handle: FileHandle
        var hasher = SHA256()
        var bytes = 0
        var head: [UInt8] = []
        let name: String
        let limit: Int

        init(in folder: URL, name: String, limit: Int) throws {
            temporary = folder.appendingPathComponent(".incoming-\(UUID().uuidString)")
            guard FileManager.default.createFile(atPath: temporary.path, contents: nil) else {
                throw APIError(status: .internalServerError, code: "storage", message: "cannot store the upload")
            }
            handle = try FileHandle(forWritingTo: temporary)
            self.name = name
            self.limit = limit
        }

        func append(_ buffer: ByteBuffer) throws {
            bytes += buffer.readableBytes
            if bytes > limit { throw APIError.tooLarge(limit) }
            buffer.withUnsafeReadableBytes { raw in
                hasher.update(bufferPointer: raw)
                if head.count < 16 { head += raw.prefix(16 - head.count) }
            }
            try handle.write(contentsOf: Data(buffer.readableBytesView))
        }

        func discard() {
            try? handle.close()
            try? FileManager.default.removeItem(at: temporary)
        }

        var digest: String { hexString(hasher.finalize()) }
    }

    func begin(name: String) throws -> Incoming {
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        return try Incoming(in: folder, name: name, limit: maxBytes)
    }

    /// Moves finished files into `uploads/DIGEST/` (DIGEST: of the one file, or of all of them) and
    /// returns where they went. Refuses the lot (415) if any is not an image or video Sluice reads.
    func keep(_ files: [Incoming]) throws -> (folder: URL, stored: [Stored]) {
        defer { for file in files { file.discard() } }
        var kinds: [UploadKind] = []
        for file in files {
            guard file.bytes > 0 else { throw APIError.badRequest("upload '\(file.name)' is empty") }
            guard let kind = UploadKind.sniff(file.head) else {
                throw APIError.unsupportedMedia("upload '\(file.name)' is not a \(UploadKind.accepted) file (judged by its content)")
            }
            kinds.append(kind)
        }
        let digests = files.map(\.digest)
        var combined = SHA256()
        for digest in digests { combined.update(data: Data(digest.utf8)) }
        let key = files.count == 1 ? digests[0] : hexString(combined.finalize())
        let target = folder.appendingPathComponent(String(key.prefix(16)), isDirectory: true)
        try FileManager.default.createDirectory(at: target, withIntermediateDirectories: true)
        var stored: [Stored] = []
        var used = Set<String>()
        for (file, kind) in zip(files, kinds) {
            try file.handle.close()
            var name = safeFileName(file.name, kind: kind)
            while used.contains(name) { name = "_" + name }
            used.insert(name)
            let destination = target.appendingPathComponent(name)
            if FileManager.default.fileExists(atPath: destination.path) {
                try FileManager.default.removeItem(at: file.temporary)
            } else {
                try FileManager.default.moveItem(at: file.temporary, to: destination)
            }
            stored.append(Stored(path: "uploads/\(target.lastPathComponent)/\(name)", name: name, kind: kind.rawValue,
                                 bytes: file.bytes, sha256: digests[stored.count]))
        }
        return (target, stored)
    }

    /// A raw upload (`POST /v1/files`): the body is the file.
    func receive(_ body: RequestBody, name: String) async throws -> Stored {
        let file = try begin(name: name)
        do {
            for try await buffer in body { try file.append(buffer) }
        } catch {
            file.discard()
            throw error
        }
        return try keep([file]).stored[0]
    }

    /// A multipart form: a `pipeline` field (kept in memory, up to `maxText` bytes) and file parts,
    /// stored together.
    func receiveForm(_ body: RequestBody, boundary: String, maxText: Int) async throws -> (pipeline: String?, folder: URL?, stored: [Stored]) {
        let parser = MultipartParser(boundary: boundary)
        var files: [Incoming] = []
        var fields: [String: String] = [:]
        var headers: [String: String] = [:]
        var text: [UInt8]?
        var current: Incoming?
        var failure: (any Error)?
        parser.onHeader = { name, value in headers[name.lowercased()] = value }
        parser.onBody = { buffer in
            guard failure == nil else { return }
            do {
                if current == nil && text == nil {
                    let disposition = Self.disposition(headers["content-disposition"] ?? "")
                    // The pipeline is text even when sent as a file (`curl -F pipeline=@p.yaml`).
                    if let filename = disposition["filename"], disposition["name"] != "pipeline" {
                        current = try begin(name: filename)
                        files.append(current!)
                    } else {
                        text = []
                    }
                }
                if let file = current {
                    try file.append(buffer)
                } else {
                    text! += buffer.readableBytesView
                    if text!.count > maxText { throw APIError.tooLarge(maxText) }
                }
            } catch {
                failure = error
            }
        }
        parser.onPartComplete = {
            let disposition = Self.disposition(headers["content-disposition"] ?? "")
            if current == nil, text == nil, let filename = disposition["filename"], disposition["name"] != "pipeline", failure == nil {
                // An empty file part: no body callback came.
                do { files.append(try begin(name: filename)) } catch { failure = error }
            } else if current == nil, let name = disposition["name"] {
                fields[name] = String(decoding: text ?? [], as: UTF8.self)
            }
            current = nil
            text = nil
            headers = [:]
        }
        do {
            for try await buffer in body {
                try parser.execute(buffer)
                if let failure { throw failure }
            }
        } catch let error as APIError {
            for file in files { file.discard() }
            throw error
        } catch {
            for file in files { file.discard() }
            throw APIError.badRequest("malformed multipart body: \(error)")
        }
        guard !files.isEmpty else { return (fields["pipeline"], nil, []) }
        let kept = try keep(files)
        return (fields["pipeline"], kept.folder, kept.stored)
    }

    /// `form-data; name="files"; filename="cat.jpg"` → ["name": "files", "filename": "cat.jpg"].
    static func disposition(_ header: String) -> [String: String] {
        var values: [String: String] = [:]
        for part in header.split(separator: ";").dropFirst() {
            let pair = part.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard pair.count == 2 else { continue }
            var value = pair[1]
            if value.hasPrefix("\""), value.hasSuffix("\""), value.count >= 2 { value = String(value.dropFirst().dropLast()) }
            values[pair[0].lowercased()] = value
        }
        return values
    }
}
