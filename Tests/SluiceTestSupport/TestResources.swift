import Foundation
import XCTest

/// What tests need from outside their fixtures: the repository, the real EfficientNet-Lite0 checkpoint
/// and the `sluice` binary of the same build. One copy for every test target.
public enum TestResources {
    public static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()

    /// The real EfficientNet-Lite0 checkpoint named by SLUICE_LITE0_WEIGHTS (scripts/test sets it). A
    /// test without it is skipped, or fails under SLUICE_REQUIRE_FIXTURES=1 (as CI runs).
    public static func lite0Weights() throws -> URL {
        guard let path = ProcessInfo.processInfo.environment["SLUICE_LITE0_WEIGHTS"],
              FileManager.default.fileExists(atPath: path) else {
            if ProcessInfo.processInfo.environment["SLUICE_REQUIRE_FIXTURES"] == "1" {
                XCTFail("SLUICE_LITE0_WEIGHTS must name the EfficientNet-Lite0 checkpoint (scripts/setup fetches it)")
            }
            throw XCTSkip("set SLUICE_LITE0_WEIGHTS to the EfficientNet-Lite0 checkpoint (scripts/test does)")
        }
        return URL(fileURLWithPath: path)
    }
}

extension TestResources {
    /// A skip for test data or a tool that is not here: a user's clone without ../shared skips (and
    /// `scripts/test` lists the skips at the end); under SLUICE_REQUIRE_FIXTURES=1, as `.ci/run` runs, it
    /// fails instead.
    public static func missing(_ reason: String, file: StaticString = #filePath, line: UInt = #line) -> XCTSkip {
        if ProcessInfo.processInfo.environment["SLUICE_REQUIRE_FIXTURES"] == "1" {
            XCTFail("\(reason) (SLUICE_REQUIRE_FIXTURES=1)", file: file, line: line)
        }
        return XCTSkip(reason)
    }
}

extension TestResources {
    /// A copy of the Lite0 checkpoint in `folder` (which the caller made world-readable), readable by the
    /// unprivileged user a test runs the binary as: the clone itself may sit in a private folder (CI
    /// clones into `mktemp -d`, mode 0700) that `nobody` cannot enter.
    public static func lite0Weights(readableByAnyoneIn folder: URL) throws -> URL {
        let copy = folder.appendingPathComponent("efficientnet-lite0.pth")
        if !FileManager.default.fileExists(atPath: copy.path) {
            try FileManager.default.copyItem(at: try lite0Weights(), to: copy)
        }
        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: copy.path)
        return copy
    }
}

/// Runs the `sluice` binary built beside the test bundle.
public enum SluiceCLI {
    /// The executable of the same build (on Linux the bundle URL is the products folder; elsewhere it
    /// is the .xctest bundle inside it).
    public static var executable: URL {
        let bundle = Bundle(for: BundleMarker.self).bundleURL
        let products = bundle.pathExtension == "xctest" ? bundle.deletingLastPathComponent() : bundle
        return products.appendingPathComponent("sluice")
    }

    /// Starts `sluice ARGUMENTS`, as another user when `user` is given, with `$SLUICE_HOME` set to
    /// `home` when given. Its stdout and stderr go to `log` when given, else nowhere.
    public static func start(_ arguments: [String], home: URL? = nil, log: URL? = nil,
                             as user: String? = nil) throws -> Process {
        try start(arguments, home: home, stdout: log, stderr: log, as: user)
    }

    public struct Finished {
        public var status: Int32
        public var stdout: String
        public var stderr: String
        /// Both streams, stdout first.
        public var output: String { stdout + stderr }
    }

    /// Runs `sluice ARGUMENTS` to the end. The streams go through files, so a chatty run cannot fill a
    /// pipe and stall. `fileSizeLimit` (bytes) runs it under that RLIMIT_FSIZE (util-linux `prlimit`):
    /// every write past it fails as on a full disk.
    public static func run(_ arguments: [String], home: URL? = nil, as user: String? = nil,
                           fileSizeLimit: Int? = nil, environment: [String: String] = [:]) throws -> Finished {
        let logs = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-log-\(UUID().uuidString)")
        let stdout = logs.appendingPathExtension("out"), stderr = logs.appendingPathExtension("err")
        defer {
            try? FileManager.default.removeItem(at: stdout)
            try? FileManager.default.removeItem(at: stderr)
        }
        let process = try start(arguments, home: home, stdout: stdout, stderr: stderr, as: user, fileSizeLimit: fileSizeLimit,
                                environment: environment)
        process.waitUntilExit()
        func read(_ url: URL) -> String { (try? String(contentsOf: url, encoding: .utf8)) ?? "" }
        return Finished(status: process.terminationStatus, stdout: read(stdout), stderr: read(stderr))
    }

    static func start(_ arguments: [String], home: URL?, stdout: URL?, stderr: URL?, as user: String?,
                      fileSizeLimit: Int? = nil, environment extra: [String: String] = [:]) throws -> Process {
        let process = Process()
        var command = [executable.path] + arguments
        if let user { command = ["/usr/bin/setpriv", "--reuid=\(user)", "--regid=\(user)", "--clear-groups"] + command }
        if let fileSizeLimit { command = ["/usr/bin/prlimit", "--fsize=\(fileSizeLimit)"] + command }
        process.executableURL = URL(fileURLWithPath: command[0])
        process.arguments = Array(command.dropFirst())
        if home != nil || !extra.isEmpty {
            var environment = ProcessInfo.processInfo.environment.merging(extra) { $1 }
            if let home { environment["SLUICE_HOME"] = home.path }
            process.environment = environment
        }
        func handle(_ url: URL?) throws -> FileHandle {
            guard let url else { return FileHandle.nullDevice }
            FileManager.default.createFile(atPath: url.path, contents: nil)
            return try FileHandle(forWritingTo: url)
        }
        let out = try handle(stdout)
        process.standardOutput = out
        process.standardError = stderr == stdout ? out : try handle(stderr)
        try process.run()
        return process
    }
}

private final class BundleMarker {}
