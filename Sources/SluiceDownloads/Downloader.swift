import AsyncHTTPClient
import Crypto
import Foundation
import NIOCore
import NIOHTTP1

/// Downloads one file over HTTP(S) with async-http-client: redirects followed, connect and read
/// timeouts, retries with exponential backoff, and resumption of a partial download with a range
/// request. The bytes go to `FILE.partial` beside the destination and are renamed into place only when
/// complete, so a partial file never replaces a good one.
public final class Downloader: Sendable {
    public struct Options: Sendable {
        public var connectTimeout: Double = 15
        /// No byte for this long ends the attempt.
        public var readTimeout: Double = 60
        /// Attempts after the first, per address, for failures that may pass (connection lost, timeouts, 5xx).
        public var retries = 4
        /// The first wait before a retry; each later one doubles it.
        public var backoff: Double = 1
        public init() {}
    }

    public let options: Options
    let client: HTTPClient

    public init(options: Options = Options()) {
        self.options = options
        var configuration = HTTPClient.Configuration(
            redirectConfiguration: .follow(max: 8, allowCycles: false),
            timeout: .init(connect: .milliseconds(Int64(options.connectTimeout * 1000)),
                           read: .milliseconds(Int64(options.readTimeout * 1000))))
        configuration.decompression = .disabled
        client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }

    public func shutdown() async throws { try await client.shutdown() }

    /// Downloads the first address that works into `destination` (resuming `destination.partial` when
    /// one is there). `progress` gets the bytes held so far and the total when known.
    public func download(from urls: [String], to destination: URL,
                         progress: @escaping @Sendable (Int64, Int64?) -> Void = { _, _ in }) async throws {
        var last: DownloadError?
        for url in urls {
            do {
                try await download(from: url, to: destination, progress: progress)
                return
            } catch let error as DownloadError {
                // A full disk or an unwritable folder fails the same at any address.
                if case .storage = error { throw error }
                last = error
            }
        }
        throw last ?? DownloadError.unreachable(url: "", reason: "no address to download from")
    }

    func download(from url: String, to destination: URL, progress: @escaping @Sendable (Int64, Int64?) -> Void) async throws {
        let partial = URL(fileURLWithPath: destination.path + ".partial")
        var attempt = 0
        while true {
            do {
                try await fetch(url, into: partial, progress: progress)
                break
            } catch let error as DownloadError where error.mayPass && attempt < options.retries {
                // Connection lost, timeout, 5xx: wait, then ask again for what is still missing.
                attempt += 1
                try await Task.sleep(for: .milliseconds(Int64(options.backoff * 1000 * Double(1 << (attempt - 1)))))
            }
        }
        if rename(partial.path, destination.path) != 0 {
            throw DownloadError.storage(path: destination.path, reason: String(cString: strerror(errno)))
        }
    }

    /// One attempt: asks for the bytes after those already in `partial` and appends what comes.
    private func fetch(_ url: String, into partial: URL, progress: @escaping @Sendable (Int64, Int64?) -> Void) async throws {
        var held = Int64((try? FileManager.default.attributesOfItem(atPath: partial.path)[.size] as? NSNumber)??.int64Value ?? 0)
        var request = HTTPClientRequest(url: url)
        request.headers.add(name: "User-Agent", value: "sluice")
        if held > 0 { request.headers.add(name: "Range", value: "bytes=\(held)-") }
        let response: HTTPClientResponse
        do {
            response = try await client.execute(request, timeout: .seconds(Int64(options.connectTimeout + options.readTimeout)))
        } catch {
            throw DownloadError.classify(error, url: url, readTimeout: options.readTimeout)
        }
        var total: Int64?
        switch response.status.code {
        case 200:
            // The whole file (a server that ignores ranges answers so too): start over.
            if held > 0 { held = 0; truncate(partial.path, 0) }
            total = response.headers.first(name: "Content-Length").flatMap(Int64.init)
        case 206:
            // `bytes START-END/TOTAL`: the part must start where ours ends.
            let range = response.headers.first(name: "Content-Range") ?? ""
            let numbers = range.split(whereSeparator: { !$0.isNumber }).compactMap { Int64($0) }
            guard numbers.count >= 2, numbers[0] == held else {
                truncate(partial.path, 0)
                throw DownloadError.interrupted(url: url, reason: "the server sent a range that does not continue the partial download (\(range))")
            }
            total = numbers.count == 3 ? numbers[2] : nil
        case 416:
            // Nothing after what we hold: complete if the server says the file is that long.
            let range = response.headers.first(name: "Content-Range") ?? ""
            if let size = range.split(separator: "/").last.flatMap({ Int64($0) }), size == held { progress(held, held); return }
            truncate(partial.path, 0)
            throw DownloadError.interrupted(url: url, reason: "the partial download does not fit the file on the server; starting over")
        case 404, 410:
            throw DownloadError.notFound(url: url)
        case 500...599:
            throw DownloadError.server(url: url, status: Int(response.status.code), mayPass: true)
        default:
            throw DownloadError.server(url: url, status: Int(response.status.code), mayPass: false)
        }
        let file = try AppendingFile(partial)
        defer { file.close() }
        var received = held
        progress(received, total)
        do {
            for try await buffer in response.body {
                try file.append(buffer)
                received += Int64(buffer.readableBytes)
                progress(received, total)
            }
        } catch let error as DownloadError {
            throw error
        } catch {
            throw DownloadError.classify(error, url: url, readTimeout: options.readTimeout)
        }
        if let total, received < total {
            throw DownloadError.interrupted(url: url, reason: "the connection ended after \(received) of \(total) bytes")
        }
    }

    /// SHA-256 (hex) of a file, read a megabyte at a time.
    public static func sha256(of url: URL) throws -> String {
        guard let handle = FileHandle(forReadingAtPath: url.path) else {
            throw DownloadError.storage(path: url.path, reason: "cannot read")
        }
        defer { try? handle.close() }
        var hasher = SHA256()
        while true {
            let chunk = handle.readData(ofLength: 1 << 20)
            if chunk.isEmpty { break }
            hasher.update(data: chunk)
        }
        return hasher.finalize().map { String(format: "%02x", $0) }.joined()
    }
}

/// Appends to a file with write(2), so a full disk is told as such (ENOSPC).
final class AppendingFile {
    let path: String
    let descriptor: Int32

    init(_ url: URL) throws {
        path = url.path
        descriptor = open(path, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        if descriptor < 0 { throw DownloadError.storage(path: path, reason: String(cString: strerror(errno))) }
    }

    func append(_ buffer: ByteBuffer) throws {
        try buffer.withUnsafeReadableBytes { bytes in
            var offset = 0
            while offset < bytes.count {
                let written = write(descriptor, bytes.baseAddress! + offset, bytes.count - offset)
                if written < 0 {
                    if errno == EINTR { continue }
                    let reason = errno == ENOSPC || errno == EDQUOT || errno == EFBIG
                        ? "the disk is full (\(String(cString: strerror(errno))))" : String(cString: strerror(errno))
                    throw DownloadError.storage(path: path, reason: reason)
                }
                offset += written
            }
        }
    }

    func close() { _ = Glibc.close(descriptor) }
}

public enum DownloadError: Error, Equatable, CustomStringConvertible {
    case notFound(url: String)
    case server(url: String, status: Int, mayPass: Bool)
    case unreachable(url: String, reason: String)
    case timedOut(url: String, seconds: Double)
    case interrupted(url: String, reason: String)
    case storage(path: String, reason: String)

    var mayPass: Bool {
        switch self {
        case .notFound, .storage: false
        case .server(_, _, let mayPass): mayPass
        case .unreachable, .timedOut, .interrupted: true
        }
    }

    public var description: String {
        switch self {
        case .notFound(let url): "\(url): not found (404): the file is not at this address (any more)"
        case .server(let url, let status, _): "\(url): the server answered \(status)"
        case .unreachable(let url, let reason): "\(url): cannot connect (\(reason)); is this machine online, or is a mirror needed (--mirror, SLUICE_MODEL_MIRROR)?"
        case .timedOut(let url, let seconds): "\(url): no data for \(Int(seconds)) s; gave up after the retries"
        case .interrupted(let url, let reason): "\(url): \(reason)"
        case .storage(let path, let reason): "\(path): cannot write the download: \(reason)"
        }
    }

    static func classify(_ error: any Error, url: String, readTimeout: Double) -> DownloadError {
        if let error = error as? DownloadError { return error }
        if let client = error as? HTTPClientError {
            if [.readTimeout, .deadlineExceeded, .connectTimeout].contains(client) { return .timedOut(url: url, seconds: readTimeout) }
            if [.remoteConnectionClosed, .bodyLengthMismatch].contains(client) {
                return .interrupted(url: url, reason: "the connection was cut (\(client))")
            }
            if [.redirectLimitReached, .redirectCycleDetected].contains(client) {
                return .server(url: url, status: 310, mayPass: false)
            }
            return .unreachable(url: url, reason: "\(client)")
        }
        return .unreachable(url: url, reason: "\(error)")
    }
}
