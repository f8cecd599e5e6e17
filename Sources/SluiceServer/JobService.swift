import Foundation
import Logging
import ServiceLifecycle
import SluiceJobs
import SluiceModels
import SluicePipeline

/// The server's jobs: validates and submits pipelines, and runs the unfinished ones one at a time (a
/// thread of its own, its forward passes on the shared lane), oldest first, resuming after a restart.
/// On graceful shutdown the run in progress finishes the items in flight, commits them, and gives back
/// the rest, which the next start takes up again.
final class JobService: Service, @unchecked Sendable {
    let store: any JobQueue
    let configuration: ServerConfiguration
    let models: ModelCache
    let lane: InferenceLane
    let policy: InputPolicy
    let logger: Logger
    private let lock = NSLock()
    private let wake = DispatchSemaphore(value: 0)
    private var stopping = false
    private var current: Progress?
    /// Jobs that cannot run (their model failed to load since they were submitted), with the reason.
    private var blocked: [String: String] = [:]

    struct Progress {
        var job: String
        var started: Date
        var finishedAtStart: Int
    }

    init(configuration: ServerConfiguration, queue: (any JobQueue)?, models: ModelCache, lane: InferenceLane, logger: Logger) throws {
        self.configuration = configuration
        self.models = models
        self.lane = lane
        self.logger = logger
        try FileManager.default.createDirectory(at: configuration.uploads, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(at: configuration.artefacts, withIntermediateDirectories: true)
        store = try queue ?? SQLiteJobQueue(path: configuration.store)
        policy = InputPolicy(roots: configuration.inputRoots)
    }

    // MARK: Submission

    /// Parses and checks a pipeline (relative paths from `base`), then submits it. The same pipeline
    /// text with the same inputs is the same job: submitting it again returns it (`created` false).
    func submit(text: String, base: URL) async throws -> (job: Job, created: Bool) {
        let definition: PipelineDefinition
        do {
            definition = try PipelineDefinition.parse(text, file: "pipeline", baseDirectory: base, requiresSink: false)
        } catch let error as PipelineValidationError {
            var refusal = APIError.badRequest(error.issues.first?.description ?? "invalid pipeline", code: "invalid_pipeline")
            refusal.issues = error.issues.map { APIError.Issue(line: $0.line, column: $0.column, message: $0.message) }
            throw refusal
        }
        if let weights = definition.model.weights { try policy.check(weights) }
        switch definition.source {
        case .images(let paths, _), .videos(let paths, _, _): for path in paths { try policy.check(path) }
        case .list(let path): try policy.check(path)
        }
        let items: [InputItem]
        do { items = try definition.source.items() } catch { throw APIError.badRequest("source: \(error)") }
        guard !items.isEmpty else { throw APIError.badRequest("source: no inputs found (images: .jpg .jpeg .png; videos by extension)") }
        for item in items where item.listingError == nil { try policy.check(item.path) }
        // The model must load before the job is accepted: a wrong name or missing weights is the
        // submitter's error, said now.
        do {
            _ = try await models.load(definition.model.name, weights: definition.model.weights)
        } catch {
            throw APIError(status: .unprocessableContent, code: "model_unavailable", message: "\(error)")
        }
        let origin = base.appendingPathComponent("pipeline.yaml").path
        let id = JobID.make(pipeline: text, sources: items.map(\.path))
        let existed = try store.job(id: id)?.id == id
        let job = try store.submit(name: definition.name, pipeline: text, origin: origin, items: items, fresh: false)
        if job.cancelledAt != nil { try store.uncancel(job: job.id) }
        lock.withLock { _ = blocked.removeValue(forKey: job.id) }
        wake.signal()
        return (try store.job(id: job.id) ?? job, !existed)
    }

    func cancel(_ id: String) throws -> Job {
        let job = try find(id)
        try store.cancel(job: job.id)
        return try find(job.id)
    }

    func find(_ id: String) throws -> Job {
        let found: Job?
        do { found = try store.job(id: id) } catch let error as JobQueueError { throw APIError.badRequest("\(error)") }
        guard let found else { throw APIError.notFound("no job '\(id)'") }
        return found
    }

    /// Where a job's artefacts (overlays, masks, exported results) go.
    func artefacts(of job: String) -> URL { configuration.artefacts.appendingPathComponent(job, isDirectory: true) }

    // MARK: Views

    func view(_ job: Job) throws -> JobView {
        let status = try store.status(job: job.id)
        let (progress, reason) = lock.withLock { (current?.job == job.id ? current : nil, blocked[job.id]) }
        let state: String
        if job.cancelledAt != nil {
            // Until the run notices and commits the items in flight, the counts still move.
            state = status.remaining == 0 ? "done" : progress != nil ? "cancelling" : "cancelled"
        } else if status.remaining == 0 {
            state = "done"
        } else if reason != nil {
            state = "blocked"
        } else {
            state = progress == nil ? "queued" : "running"
        }
        var rate: Double?, eta: Double?
        if let progress {
            let elapsed = Date().timeIntervalSince(progress.started)
            let finished = status.done + status.failed - progress.finishedAtStart
            if elapsed > 0.5 && finished > 0 {
                rate = Double(finished) / elapsed
                eta = Double(status.remaining) / rate!
            }
        }
        return JobView(id: job.id, name: job.name, state: state, createdAt: job.createdAt, total: status.total,
                       done: status.done, failed: status.failed, pending: status.pending, running: status.claimed,
                       itemsPerSecond: rate, etaSeconds: eta, error: reason)
    }

    // MARK: Running

    func run() async throws {
        let finished = DispatchSemaphore(value: 0)
        let thread = Thread { [self] in
            loop()
            finished.signal()
        }
        thread.name = "sluice.jobs"
        thread.start()
        await withGracefulShutdownHandler {
            await withCheckedContinuation { continuation in
                DispatchQueue.global().async { finished.wait(); continuation.resume() }
            }
        } onGracefulShutdown: { [self] in
            logger.info("stopping: finishing the items in flight")
            stop()
        }
    }

    func stop() {
        lock.withLock { stopping = true }
        wake.signal()
    }

    private var isStopping: Bool { lock.withLock { stopping } }

    private func loop() {
        while !isStopping {
            guard let job = nextJob() else {
                _ = wake.wait(timeout: .now() + 1)
                continue
            }
            runJob(job)
        }
    }

    /// The oldest job with items left that is neither cancelled nor blocked.
    private func nextJob() -> Job? {
        do {
            let blockedIDs = lock.withLock { Set(blocked.keys) }
            for job in try store.jobs().reversed() where job.cancelledAt == nil && !blockedIDs.contains(job.id) {
                if try store.status(job: job.id).remaining > 0 { return job }
            }
        } catch {
            logger.error("job store: \(error)")
        }
        return nil
    }

    private func runJob(_ job: Job) {
        let base = URL(fileURLWithPath: job.origin).deletingLastPathComponent()
        do {
            guard let text = job.pipeline else { throw ConfigurationError("the job has no stored pipeline") }
            let definition = try PipelineDefinition.parse(text, file: "pipeline", baseDirectory: base, requiresSink: false)
            let (card, loaded) = try models.load(definition.model.name, weights: definition.model.weights)
            let folder = artefacts(of: job.id)
            let configured = loaded.settingSegmentationMode(definition.model.mode)
                .settingVideo(framesPerClip: definition.model.framesPerClip, mode: definition.model.clipMode)
            let plan = try PipelinePlan(card: card, loaded: configured, media: definition.source.media,
                                        postprocessing: definition.postprocessing,
                                        overlayFolder: definition.overlay.map { _ in folder.appendingPathComponent("overlays").path },
                                        maskFolder: definition.masks.map { _ in folder.appendingPathComponent("masks").path })
            // One decoder: the lane's passes already use every core.
            let executor = PipelineExecutor(plan: plan, options: .init(maxBatch: definition.model.batch, maxWait: definition.model.maxWait,
                                                                       decoders: 1, lane: lane))
            let status = try store.status(job: job.id)
            lock.withLock { current = Progress(job: job.id, started: Date(), finishedAtStart: status.done + status.failed) }
            defer { lock.withLock { current = nil } }
            logger.info("job \(job.id) (\(job.name)): running \(status.remaining) of \(status.total) items")
            let runner = JobRunner(queue: store, jobID: job.id)
            runner.notice = { [logger] in logger.info("\($0)") }
            let summary = try runner.run(executor: executor, commitEvery: definition.model.batch,
                                         observers: [PipelineMetrics(model: card.name)], shouldStop: { [self] in isStopping })
            let named = [definition.jsonl, definition.csv].map { $0.map { folder.appendingPathComponent(($0 as NSString).lastPathComponent).path } }
            if !summary.stopped, named.contains(where: { $0 != nil }) {
                try runner.exportSinks(jsonl: named[0], csv: named[1], topK: definition.topK, masks: card.task.makesMasks,
                                       clips: card.task == .videoClassification)
            }
            logger.info("job \(job.id): \(summary.stopped ? (summary.cancelled ? "cancelled" : "stopped") : "finished"), \(summary.items) items in \(String(format: "%.1f", summary.seconds)) s")
        } catch {
            logger.error("job \(job.id): \(error)")
            lock.withLock { blocked[job.id] = "\(error)" }
        }
    }
}

struct JobView: Encodable {
    var id: String
    var name: String
    var state: String
    var createdAt: Date
    var total: Int
    var done: Int
    var failed: Int
    var pending: Int
    var running: Int
    var itemsPerSecond: Double?
    var etaSeconds: Double?
    var error: String?

    enum CodingKeys: String, CodingKey {
        case id, name, state, total, done, failed, pending, running, error
        case createdAt = "created_at", itemsPerSecond = "items_per_second", etaSeconds = "eta_seconds"
    }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(id, forKey: .id); try c.encode(name, forKey: .name); try c.encode(state, forKey: .state)
        try c.encode(createdAt, forKey: .createdAt)
        try c.encode(total, forKey: .total); try c.encode(done, forKey: .done); try c.encode(failed, forKey: .failed)
        try c.encode(pending, forKey: .pending); try c.encode(running, forKey: .running)
        try c.encode(itemsPerSecond, forKey: .itemsPerSecond); try c.encode(etaSeconds, forKey: .etaSeconds)
        try c.encodeIfPresent(error, forKey: .error)
    }
}
