import AsyncHTTPClient
import Foundation
import NIOCore
import XCTest
import SluiceJobs
import SluiceTestSupport

/// `sluice serve` as a process: its configuration errors, and SIGTERM in the middle of a job.
final class ServeCommandTests: XCTestCase {
    func testConfigurationErrorsAreOneLine() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-serve-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let config = folder.appendingPathComponent("sluice.yaml")
        try "port: 8080\ntokens: [s3cret-token]\n".write(to: config, atomically: true, encoding: .utf8)
        let plainToken = try SluiceCLI.run(["serve", "--config", config.path], home: folder)
        XCTAssertEqual(plainToken.status, 1)
        XCTAssertTrue(plainToken.stderr.contains("sluice.yaml:2:9: 'tokens' lists SHA-256 hashes"), plainToken.stderr)
        try "port: 8080\nroots: [/tmp]\nthreads: 2\n".write(to: config, atomically: true, encoding: .utf8)
        let unknown = try SluiceCLI.run(["serve", "--config", config.path], home: folder)
        XCTAssertTrue(unknown.stderr.contains("sluice.yaml:3:1: unknown setting 'threads'"), unknown.stderr)
        let open = try SluiceCLI.run(["serve", "--host", "0.0.0.0", "--port", "0"], home: folder)
        XCTAssertEqual(open.status, 1)
        XCTAssertTrue(open.stderr.contains("needs bearer tokens"), open.stderr)
        let noRoot = try SluiceCLI.run(["serve", "--root", folder.appendingPathComponent("nope").path], home: folder)
        XCTAssertTrue(noRoot.stderr.contains("does not exist"), noRoot.stderr)
    }

    /// Starts `sluice serve ARGUMENTS --threads 1` and waits for the port it listens on.
    func startServe(_ arguments: [String], home: URL, log: URL) async throws -> (Process, Int) {
        let process = try SluiceCLI.start(["serve"] + arguments + ["--threads", "1"], home: home, log: log)
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline {
            let text = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
            if let range = text.range(of: "listening on http://127.0.0.1:") {
                let digits = text[range.upperBound...].prefix { $0.isNumber }
                if let port = Int(digits) { return (process, port) }
            }
            if !process.isRunning { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        process.terminate()
        throw XCTSkip("sluice serve did not start: \((try? String(contentsOf: log, encoding: .utf8)) ?? "")")
    }

    func getJSON(_ port: Int, _ path: String) async throws -> [String: Any] {
        var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)\(path)")
        request.headers.add(name: "Authorization", value: "Bearer \(TestServer.token)")
        let response = try await TestServer.client.execute(request, timeout: .seconds(30))
        let body = try await response.body.collect(upTo: 1 << 24)
        return (try? JSONSerialization.jsonObject(with: Data(buffer: body))) as? [String: Any] ?? [:]
    }

    /// `sluice serve --queue postgres://…`: a job submitted over HTTP lives in the shared queue, where
    /// `sluice worker`s and `sluice jobs --queue` see it; the server's API reads it back from there.
    func testServeOverASharedPostgreSQLQueue() async throws {
        guard let server = ProcessInfo.processInfo.environment["SLUICE_TEST_POSTGRES_URL"] else {
            throw TestResources.missing("no PostgreSQL server: set SLUICE_TEST_POSTGRES_URL (scripts/test starts one)")
        }
        let database = "sluice_serve_\(UUID().uuidString.prefix(8).lowercased())"
        func psql(_ sql: String) throws {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/psql")
            process.arguments = ["-q", server, "-c", sql]
            try process.run()
            process.waitUntilExit()
            XCTAssertEqual(process.terminationStatus, 0, sql)
        }
        try psql("CREATE DATABASE \(database)")
        addTeardownBlock { try? psql("DROP DATABASE IF EXISTS \(database) WITH (FORCE)") }
        var components = URLComponents(string: server)!
        components.path = "/" + database
        let queue = components.string!

        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-serve-\(UUID().uuidString.prefix(8))")
        try TestServer.makeInputs(in: folder)
        let config = folder.appendingPathComponent("sluice.yaml")
        try "port: 0\ndata: data\nroots: [root]\ntokens: [\(TestServer.tokenHash)]\nmodels: [efficientnet_lite0]\n"
            .write(to: config, atomically: true, encoding: .utf8)
        let home = try TestServer.home()
        let (serve, port) = try await startServe(["--config", config.path, "--queue", queue], home: home,
                                                 log: folder.appendingPathComponent("serve.log"))
        defer { serve.terminate(); serve.waitUntilExit() }
        var submit = HTTPClientRequest(url: "http://127.0.0.1:\(port)/v1/jobs")
        submit.method = .POST
        submit.headers.add(name: "Authorization", value: "Bearer \(TestServer.token)")
        let photos = folder.appendingPathComponent("root/photos").path
        submit.body = .bytes(ByteBuffer(string: "name: shared\nsource: { images: \(photos) }\nstages:\n  - model: efficientnet_lite0\n"))
        let submitted = try await TestServer.client.execute(submit, timeout: .seconds(60))
        XCTAssertEqual(submitted.status.code, 201)
        let body = try await submitted.body.collect(upTo: 1 << 20)
        let id = try XCTUnwrap(((try JSONSerialization.jsonObject(with: Data(buffer: body)) as? [String: Any])?["job"] as? [String: Any])?["id"] as? String)
        let deadline = Date().addingTimeInterval(120)
        var job: [String: Any] = [:]
        while Date() < deadline {
            job = try await getJSON(port, "/v1/jobs/\(id)")
            if job["state"] as? String == "done" { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        XCTAssertEqual(job["state"] as? String, "done", "\(job)")
        let total = try XCTUnwrap(job["total"] as? Int)
        XCTAssertGreaterThan(total, 0)
        let listed = try SluiceCLI.run(["jobs", "list", "--queue", queue], home: home)
        XCTAssertEqual(listed.status, 0, listed.stderr)
        XCTAssertTrue(listed.stdout.hasPrefix("\(id)\tshared\t\(total) done, 0 failed, 0 pending of \(total)"), listed.stdout)
        XCTAssertFalse(FileManager.default.fileExists(atPath: folder.appendingPathComponent("data/jobs.sqlite").path),
                       "no SQLite store beside the shared queue")
    }

    /// SIGTERM while a job runs: the server stops accepting, commits the items in flight and exits 0;
    /// started again, it resumes the job, which ends with exactly one record per item.
    func testSigtermMidJobThenRestartLosesAndRepeatsNothing() async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-serve-\(UUID().uuidString.prefix(8))")
        try TestServer.makeInputs(in: folder)
        let many = folder.appendingPathComponent("root/many")
        try FileManager.default.createDirectory(at: many, withIntermediateDirectories: true)
        let count = 200
        for index in 0..<count {
            try FileManager.default.createSymbolicLink(at: many.appendingPathComponent(String(format: "%03d.png", index)),
                                                       withDestinationURL: folder.appendingPathComponent("root/photos/astronaut.png"))
        }
        let config = folder.appendingPathComponent("sluice.yaml")
        try """
            port: 0
            data: data
            roots: [root]
            tokens: [\(TestServer.tokenHash)]
            models: [efficientnet_lite0]

            """.write(to: config, atomically: true, encoding: .utf8)
        let home = try TestServer.home()
        func start(_ log: URL) async throws -> (Process, Int) { try await startServe(["--config", config.path], home: home, log: log) }
        func get(_ port: Int, _ path: String) async throws -> [String: Any] { try await getJSON(port, path) }

        let firstLog = folder.appendingPathComponent("first.log")
        let (first, port) = try await start(firstLog)
        var submit = HTTPClientRequest(url: "http://127.0.0.1:\(port)/v1/jobs")
        submit.method = .POST
        submit.headers.add(name: "Authorization", value: "Bearer \(TestServer.token)")
        submit.body = .bytes(ByteBuffer(string: "name: many\nsource: { images: \(many.path) }\nstages:\n  - model: efficientnet_lite0\n    batch: 1\n"))
        let submitted = try await TestServer.client.execute(submit, timeout: .seconds(60))
        XCTAssertEqual(submitted.status.code, 201)
        let body = try await submitted.body.collect(upTo: 1 << 20)
        let id = try XCTUnwrap(((try JSONSerialization.jsonObject(with: Data(buffer: body)) as? [String: Any])?["job"] as? [String: Any])?["id"] as? String)
        // Wait until part of the job is done, then SIGTERM.
        while true {
            let job = try await get(port, "/v1/jobs/\(id)")
            if (job["done"] as? Int ?? 0) >= 3 { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        first.terminate()
        first.waitUntilExit()
        let firstText = (try? String(contentsOf: firstLog, encoding: .utf8)) ?? ""
        XCTAssertEqual(first.terminationStatus, 0, firstText)
        XCTAssertTrue(firstText.contains("stopping: finishing the items in flight"), firstText)

        let store = try SQLiteJobQueue(path: folder.appendingPathComponent("data/jobs.sqlite").path)
        let stopped = try store.status(job: id)
        XCTAssertGreaterThanOrEqual(stopped.done, 3)
        XCTAssertLessThan(stopped.done, count, "SIGTERM came before the end (200 items at batch 1)")
        XCTAssertEqual(stopped.claimed, 0, "the items not started were given back")

        let (second, secondPort) = try await start(folder.appendingPathComponent("second.log"))
        defer { second.terminate(); second.waitUntilExit() }
        let deadline = Date().addingTimeInterval(120)
        var state = ""
        while Date() < deadline {
            state = try await get(secondPort, "/v1/jobs/\(id)")["state"] as? String ?? ""
            if state == "done" { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        XCTAssertEqual(state, "done")
        var records: [String] = []
        try store.records(job: id) { records.append($0.source) }
        XCTAssertEqual(records.count, count, "one record per item")
        XCTAssertEqual(Set(records).count, count, "none twice")
    }
}
