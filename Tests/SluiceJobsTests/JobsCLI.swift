import Foundation
import XCTest
import SluicePipeline

/// Runs the `sluice` binary built beside this test bundle with its own `$SLUICE_HOME`.
enum JobsCLI {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()

    /// The executable of the same build (on Linux the bundle URL is the products folder).
    static var sluice: URL {
        let bundle = Bundle(for: ResumeAfterKillTests.self).bundleURL
        return (bundle.pathExtension == "xctest" ? bundle.deletingLastPathComponent() : bundle).appendingPathComponent("sluice")
    }

    /// The real EfficientNet-Lite0 checkpoint (scripts/test sets SLUICE_LITE0_WEIGHTS).
    static func weights() throws -> String {
        guard let path = ProcessInfo.processInfo.environment["SLUICE_LITE0_WEIGHTS"],
              FileManager.default.fileExists(atPath: path) else {
            if ProcessInfo.processInfo.environment["SLUICE_REQUIRE_FIXTURES"] == "1" {
                XCTFail("SLUICE_LITE0_WEIGHTS must name the EfficientNet-Lite0 checkpoint")
            }
            throw XCTSkip("set SLUICE_LITE0_WEIGHTS (scripts/test does)")
        }
        return path
    }

    /// Starts `sluice ARGUMENTS` (as another user when `user` is given); stdout and stderr go to `log`
    /// when given (else nowhere).
    static func start(_ arguments: [String], home: URL, log: URL? = nil, as user: String? = nil) throws -> Process {
        let process = Process()
        if let user {
            process.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
            process.arguments = ["--reuid=\(user)", "--regid=\(user)", "--clear-groups", sluice.path] + arguments
        } else {
            process.executableURL = sluice
            process.arguments = arguments
        }
        var environment = ProcessInfo.processInfo.environment
        environment["SLUICE_HOME"] = home.path
        process.environment = environment
        if let log {
            FileManager.default.createFile(atPath: log.path, contents: nil)
            let handle = try FileHandle(forWritingTo: log)
            process.standardOutput = handle
            process.standardError = handle
        } else {
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
        }
        try process.run()
        return process
    }

    struct Finished { var status: Int32; var output: String }

    /// Runs `sluice ARGUMENTS` to the end; its combined output.
    static func run(_ arguments: [String], home: URL, as user: String? = nil) throws -> Finished {
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-log-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: log) }
        let process = try start(arguments, home: home, log: log, as: user)
        process.waitUntilExit()
        return Finished(status: process.terminationStatus, output: (try? String(contentsOf: log, encoding: .utf8)) ?? "")
    }

    static func records(_ path: URL) throws -> [ResultRecord] {
        try String(contentsOf: path, encoding: .utf8).split(separator: "\n").map {
            try JSONDecoder().decode(ResultRecord.self, from: Data($0.utf8))
        }
    }
}
