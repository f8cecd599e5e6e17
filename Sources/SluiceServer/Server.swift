import CoreMetrics
import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import Prometheus
import ServiceLifecycle
import SluiceJobs
import SluiceMedia
import SluiceModels
import SluicePipeline
import SluiceTensor

/// `sluice serve`: the HTTP API and the web page over one process's model lane and job store.
///
/// Services, shut down in reverse order on SIGTERM/SIGINT: the event streams end (clients reconnect
/// later with `Last-Event-ID`), the HTTP server stops accepting and finishes its requests, then the
/// job run in progress finishes the items in flight and commits them.
public final class SluiceServer: @unchecked Sendable {
    public let configuration: ServerConfiguration
    let jobs: JobService
    let models: ModelCache
    let lane: InferenceLane
    let uploads: Uploads
    let registry: PrometheusCollectorRegistry
    let logger: Logger
    let streams = StreamControl()
    private let batchers = NSLock()
    private var classifyBatchers: [String: ClassifyBatcher] = [:]
    private let admitted = NSLock()
    private var interactive = 0
    private let groupLock = NSLock()
    private var group: ServiceGroup?

    /// `registry` is the one the process's metrics factory writes to (`/metrics` shows it). `queue` is the
    /// job queue to serve (a shared PostgreSQL one); nil: the SQLite store in the data folder.
    public init(configuration: ServerConfiguration, modelStore: ModelStore, registry: PrometheusCollectorRegistry,
                queue: (any JobQueue)? = nil, logger: Logger) throws {
        self.configuration = configuration
        self.registry = registry
        self.logger = logger
        let laneDepth = CoreMetrics.Gauge(label: "sluice_lane_depth")
        lane = InferenceLane { laneDepth.record($0) }
        models = ModelCache(store: modelStore)
        jobs = try JobService(configuration: configuration, queue: queue, models: models, lane: lane, logger: logger)
        uploads = Uploads(folder: configuration.uploads, maxBytes: configuration.maxUploadBytes)
    }

    /// Loads the configured models (a model that fails to load stops the start, with its error).
    public func preload() throws {
        for name in configuration.models { _ = try models.load(name) }
    }

    /// Runs until SIGTERM or SIGINT; `onListening` gets the bound port (useful with port 0).
    public func run(onListening: @escaping @Sendable (Int) -> Void = { _ in }) async throws {
        let app = Application(
            router: makeRouter(),
            server: .http1(configuration: .init(idleTimeout: .seconds(Int64(configuration.idleTimeout)))),
            configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "sluice"),
            onServerRunning: { channel in onListening(channel.localAddress?.port ?? 0) },
            logger: logger)
        let group = ServiceGroup(configuration: .init(
            services: [jobs, app, streams], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        groupLock.withLock { self.group = group }
        try await group.run()
    }

    /// Starts the same graceful shutdown as SIGTERM (tests run servers in their own process).
    public func shutdown() async {
        guard let group = groupLock.withLock({ self.group }) else { return }
        await group.triggerGracefulShutdown()
    }

    // MARK: Admission of interactive requests

    /// Holds a place among the interactive requests waiting for the model, or refuses with 429.
    func admit() throws {
        let ok = admitted.withLock {
            guard interactive < configuration.queueLimit else { return false }
            interactive += 1
            return true
        }
        if !ok { throw APIError.busy(retryAfter: 1) }
    }

    func leave() { admitted.withLock { interactive -= 1 } }

    func batcher(for card: ModelCard, _ classifier: any ImageClassifier) -> ClassifyBatcher {
        batchers.withLock {
            if let found = classifyBatchers[card.name] { return found }
            let made = ClassifyBatcher(card: card, classifier: classifier, lane: lane, batch: configuration.batch)
            classifyBatchers[card.name] = made
            return made
        }
    }

    // MARK: Auth

    func isAuthorized(_ request: Request) -> Bool {
        guard !configuration.tokenHashes.isEmpty else { return true }
        // Browsers cannot set headers on EventSource, <img> or <video>: those send `?access_token=`.
        let token: String
        if let header = request.headers[.authorization], header.lowercased().hasPrefix("bearer ") {
            token = header.dropFirst("bearer ".count).trimmingCharacters(in: .whitespaces)
        } else if request.method == .get, let query = request.uri.queryParameters["access_token"] {
            token = String(query)
        } else {
            return false
        }
        let hash = hexString(SHA256.hash(data: Data(token.utf8)))
        // Compared in full whatever matches, so the time taken does not say how close a guess was.
        var found = false
        for expected in configuration.tokenHashes {
            var difference: UInt8 = expected.utf8.count == hash.utf8.count ? 0 : 1
            for (a, b) in zip(expected.utf8, hash.utf8) { difference |= a ^ b }
            if difference == 0 { found = true }
        }
        return found
    }
}

/// Ends the event streams when the service group starts shutting down (it is the last service, so it
/// is told first), so that open streams do not hold the HTTP server's shutdown.
final class StreamControl: Service, @unchecked Sendable {
    private let lock = NSLock()
    private var stopped = false
    var isStopped: Bool { lock.withLock { stopped } }

    func run() async throws {
        try? await gracefulShutdown()
        lock.withLock { stopped = true }
    }
}

struct AuthMiddleware<Context: RequestContext>: RouterMiddleware {
    let server: SluiceServer
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard server.isAuthorized(request) else {
            throw APIError.unauthorized(request.headers[.authorization] == nil && request.uri.queryParameters["access_token"] == nil
                                        ? "this server needs a bearer token (Authorization: Bearer TOKEN)"
                                        : "the bearer token is not one this server accepts")
        }
        return try await next(request, context)
    }
}

/// Adds `X-Request-Id` (the id in the server's log lines for this request) to every response, and turns
/// any error that is not already a response into a plain 500 without internals.
struct RequestIDMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var response: Response
        do {
            response = try await next(request, context)
        } catch let error as any HTTPResponseError {
            response = try error.response(from: request, context: context)
        } catch {
            context.logger.error("\(request.method) \(request.uri.path): \(error)")
            response = try APIError(status: .internalServerError, code: "internal",
                                    message: "internal error (request \(context.id))").response(from: request, context: context)
        }
        response.headers[HTTPField.Name("X-Request-Id")!] = context.id
        return response
    }
}

extension SluiceServer {
    /// Makes Prometheus the process's metrics backend (once per process) and returns its registry.
    /// Names and labels from swift-metrics users (Hummingbird's `http.server.request.duration`) are
    /// made Prometheus-safe: every character outside [a-zA-Z0-9_] becomes '_'.
    public static func bootstrapMetrics() -> PrometheusCollectorRegistry {
        MetricsBootstrap.registry
    }
}

enum MetricsBootstrap {
    static let registry: PrometheusCollectorRegistry = {
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.nameAndLabelSanitizer = { name, labels in
            (sanitize(name), labels.map { (sanitize($0.0), $0.1) })
        }
        // Interactive requests take milliseconds to seconds; forward passes up to a few seconds.
        factory.defaultDurationHistogramBuckets = [.milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10),
                                                   .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250),
                                                   .milliseconds(500), .seconds(1), .milliseconds(2500), .seconds(5), .seconds(10), .seconds(30)]
        MetricsSystem.bootstrap(factory)
        return registry
    }()

    static func sanitize(_ name: String) -> String {
        String(name.map { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") ? $0 : "_" })
    }
}

/// Lower-case hex of a digest's bytes, as token hashes and upload names are written.
func hexString(_ bytes: some Sequence<UInt8>) -> String {
    bytes.map { String(format: "%02x", $0) }.joined()
}
