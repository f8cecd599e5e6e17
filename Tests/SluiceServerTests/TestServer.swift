import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import XCTest
import SluiceModels
import SluiceServer
import SluiceTestSupport

/// A real server on a loopback port in this process, with EfficientNet-Lite0 imported into its own
/// model store, an input root with the bundled photos, a folder outside the root, and a bearer token.
final class TestServer: @unchecked Sendable {
    static let token = "s3cret-token"
    /// SHA-256 of `token`, as a configuration lists it.
    static let tokenHash = "a81e611a041b13f078bf8ebe5dab4d4fd63fcc5594661c918bec093a2f416a7e"
    static let client = HTTPClient(eventLoopGroupProvider: .singleton)

    let server: SluiceServer
    let port: Int
    let folder: URL
    var root: URL { folder.appendingPathComponent("root") }
    var outside: URL { folder.appendingPathComponent("outside") }
    var data: URL { folder.appendingPathComponent("data") }
    var base: String { "http://127.0.0.1:\(port)" }
    private let running: Task<Void, any Error>

    struct Reply {
        var status: Int
        var headers: HTTPHeaders
        var body: Data
        var text: String { String(decoding: body, as: UTF8.self) }
        var json: [String: Any] { (try? JSONSerialization.jsonObject(with: body)) as? [String: Any] ?? [:] }
        var errorMessage: String { ((json["error"] as? [String: Any])?["message"] as? String) ?? "" }
    }

    nonisolated(unsafe) private static var sharedServer: TestServer?

    /// One server for the tests that share it (started on first use, stopped with the process).
    static func shared() async throws -> TestServer {
        if let sharedServer { return sharedServer }
        let made = try await start()
        sharedServer = made
        return made
    }

    /// A model store holding the Lite0 weights, imported once per test process.
    static func home() throws -> URL {
        let home = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-server-home-\(getpid())")
        let store = ModelStore(home: home)
        if !FileManager.default.fileExists(atPath: store.weightsURL(for: "efficientnet_lite0").path) {
            _ = try store.importCheckpoint(try TestResources.lite0Weights(), model: "efficientnet_lite0")
        }
        return home
    }

    /// Lays out the input root: photos/ (astronaut.png, chelsea.png, grace_hopper.jpg), more/ (orange.jpg,
    /// a nested folder with squirrel_cls.jpg), a symbolic link to a folder outside and one to a file outside.
    static func makeInputs(in folder: URL) throws {
        let files = FileManager.default
        let images = TestResources.repository.appendingPathComponent("assets/images")
        let photos = folder.appendingPathComponent("root/photos"), more = folder.appendingPathComponent("root/more/nested")
        let outside = folder.appendingPathComponent("outside")
        for made in [photos, more, outside] { try files.createDirectory(at: made, withIntermediateDirectories: true) }
        for name in ["astronaut.png", "chelsea.png", "grace_hopper.jpg"] {
            try files.copyItem(at: images.appendingPathComponent(name), to: photos.appendingPathComponent(name))
        }
        try files.copyItem(at: images.appendingPathComponent("orange.jpg"), to: folder.appendingPathComponent("root/more/orange.jpg"))
        try files.copyItem(at: images.appendingPathComponent("squirrel_cls.jpg"), to: more.appendingPathComponent("squirrel_cls.jpg"))
        try files.copyItem(at: images.appendingPathComponent("coffee.png"), to: outside.appendingPathComponent("secret.png"))
        try files.createSymbolicLink(at: folder.appendingPathComponent("root/escape"), withDestinationURL: outside)
        try files.createSymbolicLink(at: folder.appendingPathComponent("root/link.png"),
                                     withDestinationURL: outside.appendingPathComponent("secret.png"))
    }

    static func start(configure: (inout ServerConfiguration) -> Void = { _ in }) async throws -> TestServer {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-server-\(UUID().uuidString.prefix(8))")
        try makeInputs(in: folder)
        var configuration = ServerConfiguration(data: folder.appendingPathComponent("data"))
        configuration.port = 0
        configuration.roots = [folder.appendingPathComponent("root")]
        configuration.tokenHashes = [tokenHash]
        configuration.models = ["efficientnet_lite0"]
        configuration.maxUploadBytes = 2 << 20
        configuration.maxBodyBytes = 64 << 10
        configure(&configuration)
        var logger = Logger(label: "sluice-test")
        logger.logLevel = .warning
        let server = try SluiceServer(configuration: configuration, modelStore: ModelStore(home: try home()),
                                      registry: SluiceServer.bootstrapMetrics(), logger: logger)
        try server.preload()
        let (ports, continuation) = AsyncStream.makeStream(of: Int.self)
        let running = Task { try await server.run { continuation.yield($0) } }
        var port = 0
        for await bound in ports { port = bound; break }
        return TestServer(server: server, port: port, folder: folder, running: running)
    }

    private init(server: SluiceServer, port: Int, folder: URL, running: Task<Void, any Error>) {
        self.server = server; self.port = port; self.folder = folder; self.running = running
    }

    func stop() async throws {
        await server.shutdown()
        try await running.value
    }

    /// One request; `token: nil` sends none. OpenAPI conformance of the reply is checked unless told not to.
    @discardableResult
    func request(_ method: HTTPMethod, _ path: String, body: Data? = nil, contentType: String? = nil,
                 headers: [(String, String)] = [], token: String? = TestServer.token, checkSchema: Bool = true,
                 file: StaticString = #filePath, line: UInt = #line) async throws -> Reply {
        var request = HTTPClientRequest(url: base + path)
        request.method = method
        if let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
        if let contentType { request.headers.add(name: "Content-Type", value: contentType) }
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        if let body { request.body = .bytes(ByteBuffer(bytes: body)) }
        let response = try await Self.client.execute(request, timeout: .seconds(120))
        let collected = try await response.body.collect(upTo: 64 << 20)
        let reply = Reply(status: Int(response.status.code), headers: response.headers, body: Data(buffer: collected))
        if checkSchema {
            OpenAPICheck.check(method: method.rawValue, path: path, status: reply.status,
                               contentType: response.headers.first(name: "Content-Type"), body: reply.body, file: file, line: line)
        }
        return reply
    }

    /// Polls the job until it is no longer queued or running.
    func waitForJob(_ id: String, timeout: TimeInterval = 120) async throws -> [String: Any] {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            let job = try await request(.GET, "/v1/jobs/\(id)").json
            if let state = job["state"] as? String, !["queued", "running", "cancelling"].contains(state) { return job }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw XCTSkip("job \(id) did not finish within \(timeout) s")
    }

    /// The events of a stream until it closes, or until `stopAfterItems` item events (then the
    /// connection is dropped).
    func events(_ id: String, lastEventID: String? = nil, stopAfterItems: Int? = nil) async throws -> [(name: String, id: String?, data: [String: Any])] {
        var request = HTTPClientRequest(url: base + "/v1/jobs/\(id)/events")
        request.headers.add(name: "Authorization", value: "Bearer \(Self.token)")
        if let lastEventID { request.headers.add(name: "Last-Event-ID", value: lastEventID) }
        let response = try await Self.client.execute(request, timeout: .seconds(120))
        XCTAssertEqual(response.status.code, 200)
        XCTAssertEqual(response.headers.first(name: "Content-Type"), "text/event-stream")
        var events: [(name: String, id: String?, data: [String: Any])] = []
        var pending = ""
        var items = 0
        for try await buffer in response.body {
            pending += String(buffer: buffer)
            while let end = pending.range(of: "\n\n") {
                let block = pending[..<end.lowerBound]
                pending = String(pending[end.upperBound...])
                var name = "message", eventID: String?, data = ""
                for field in block.split(separator: "\n") {
                    if field.hasPrefix("event: ") { name = String(field.dropFirst(7)) }
                    if field.hasPrefix("id: ") { eventID = String(field.dropFirst(4)) }
                    if field.hasPrefix("data: ") { data += field.dropFirst(6) }
                }
                guard !data.isEmpty else { continue }
                let object = (try? JSONSerialization.jsonObject(with: Data(data.utf8))) as? [String: Any] ?? [:]
                events.append((name, eventID, object))
                if name == "item" {
                    items += 1
                    if let stopAfterItems, items >= stopAfterItems { return events }
                }
            }
        }
        return events
    }

    func submit(_ pipeline: String, file: StaticString = #filePath, line: UInt = #line) async throws -> Reply {
        try await request(.POST, "/v1/jobs", body: Data(pipeline.utf8), contentType: "application/yaml", file: file, line: line)
    }
}

extension Data {
    init(buffer: ByteBuffer) { self = Data(buffer.readableBytesView) }
}
