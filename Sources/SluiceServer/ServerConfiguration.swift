import Foundation
import Yams

/// What `sluice serve` is told by its configuration file (`--config sluice.yaml`), with defaults for a
/// local, single-user service:
///
/// ```yaml
/// host: 127.0.0.1
/// port: 8080
/// data: /var/lib/sluice          # job store, uploads and artefacts (default: $SLUICE_HOME/server)
/// roots: [/srv/photos, /srv/videos]   # server-side inputs must lie under one of these
/// tokens:                        # SHA-256 (hex) of each accepted bearer token; none: no auth (loopback only)
///   - 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
/// models: [efficientnet_lite0]   # loaded at start (others on first use)
/// max_upload_mb: 256             # one upload (413 beyond)
/// max_body_kb: 1024              # a pipeline or other JSON body
/// queue_limit: 64                # interactive requests waiting for the model (429 beyond)
/// request_timeout_s: 60          # an interactive request waiting for the model (503 beyond)
/// idle_timeout_s: 60             # an idle connection is closed
/// batch: 8                       # most images per interactive forward pass
/// ```
public struct ServerConfiguration: Sendable, Equatable {
    public var host = "127.0.0.1"
    public var port = 8080
    public var data: URL
    public var roots: [URL] = []
    public var tokenHashes: [String] = []
    public var models: [String] = []
    public var maxUploadBytes = 256 << 20
    public var maxBodyBytes = 1 << 20
    public var queueLimit = 64
    public var requestTimeout: Double = 60
    public var idleTimeout: Double = 60
    public var batch = 8

    public init(data: URL) { self.data = data }

    /// Parses a configuration file's text; relative paths are taken from `base`. Unknown keys are errors.
    public static func parse(_ text: String, file: String, base: URL, defaults: ServerConfiguration) throws -> ServerConfiguration {
        var configuration = defaults
        let root: Node?
        do { root = try Yams.compose(yaml: text) } catch { throw ConfigurationError("\(file): \(error)") }
        guard let root else { return configuration }
        guard let mapping = root.mapping else { throw ConfigurationError("\(file): expected a mapping of settings") }
        func fail(_ node: Node, _ message: String) -> ConfigurationError {
            ConfigurationError("\(file):\(node.mark.map { "\($0.line):\($0.column)" } ?? "1:1"): \(message)")
        }
        func path(_ node: Node) throws -> URL {
            guard let text = node.string, !text.isEmpty else { throw fail(node, "expected a path") }
            return URL(fileURLWithPath: text, relativeTo: base).standardizedFileURL
        }
        func strings(_ node: Node, _ key: String) throws -> [String] {
            if let single = node.scalar { return [single.string] }
            guard let list = node.sequence else { throw fail(node, "'\(key)' must be a list") }
            return try list.map { item in
                guard let text = item.string else { throw fail(item, "'\(key)' must list strings") }
                return text
            }
        }
        func integer(_ node: Node, _ key: String, _ range: ClosedRange<Int>) throws -> Int {
            guard let value = node.int, range.contains(value) else {
                throw fail(node, "'\(key)' must be an integer in \(range.lowerBound)...\(range.upperBound)")
            }
            return value
        }
        for (keyNode, value) in mapping {
            guard let key = keyNode.string else { throw fail(keyNode, "expected a setting name") }
            switch key {
            case "host": configuration.host = value.string ?? configuration.host
            case "port": configuration.port = try integer(value, key, 0...65535)
            case "data": configuration.data = try path(value)
            case "roots":
                configuration.roots = try strings(value, key).map { URL(fileURLWithPath: $0, relativeTo: base).standardizedFileURL }
            case "tokens":
                configuration.tokenHashes = try strings(value, key).map { $0.lowercased() }
                for hash in configuration.tokenHashes where hash.count != 64 || !hash.allSatisfy(\.isHexDigit) {
                    throw fail(value, "'tokens' lists SHA-256 hashes (64 hex digits) of the tokens, not the tokens themselves")
                }
            case "models": configuration.models = try strings(value, key)
            case "max_upload_mb": configuration.maxUploadBytes = try integer(value, key, 1...1_000_000) << 20
            case "max_body_kb": configuration.maxBodyBytes = try integer(value, key, 1...1_000_000) << 10
            case "queue_limit": configuration.queueLimit = try integer(value, key, 1...100_000)
            case "request_timeout_s": configuration.requestTimeout = Double(try integer(value, key, 1...86_400))
            case "idle_timeout_s": configuration.idleTimeout = Double(try integer(value, key, 1...86_400))
            case "batch": configuration.batch = try integer(value, key, 1...256)
            default:
                throw fail(keyNode, "unknown setting '\(key)' (known: host, port, data, roots, tokens, models, max_upload_mb, max_body_kb, queue_limit, request_timeout_s, idle_timeout_s, batch)")
            }
        }
        return configuration
    }

    var uploads: URL { data.appendingPathComponent("uploads", isDirectory: true) }
    var artefacts: URL { data.appendingPathComponent("jobs", isDirectory: true) }
    var store: String { data.appendingPathComponent("jobs.sqlite").path }
    /// Where inputs may come from: the configured roots and the uploads.
    var inputRoots: [URL] { roots + [uploads] }
    public var isLoopback: Bool { ["127.0.0.1", "::1", "localhost"].contains(host) }
}

public struct ConfigurationError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
