import ArgumentParser
import Foundation
import Logging
import SluiceServer

struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve the HTTP API and the web page: jobs, interactive classify/segment, events, metrics.",
        discussion: """
            Settings come from --config (YAML: host, port, data, roots, tokens, models, limits; see README) and \
            the flags, which win. Jobs, uploads and artefacts live in the data folder ($SLUICE_HOME/server by \
            default), or with --queue postgres://… the jobs live in the shared queue, which `sluice worker`s work \
            on too (the data folder must then be on storage they all reach); a job left unfinished is resumed \
            at the next start. SIGTERM or Ctrl-C: stop accepting, \
            finish and commit the items in flight, exit 0.
            """)

    @Option(help: "Address to listen on (default 127.0.0.1).") var host: String?
    @Option(help: "Port (0: any free port; default 8080).") var port: Int?
    @Option(help: "Configuration file (YAML).") var config: String?
    @Option(name: .customLong("root"), help: "A folder whose files jobs may name as inputs (repeatable; adds to the configuration's roots).")
    var roots: [String] = []
    @Option(help: "Data folder for the job store, uploads and artefacts.") var data: String?
    @OptionGroup var queueOptions: QueueOptions
    @OptionGroup var threadOptions: ThreadOptions

    func run() throws {
        threadOptions.apply()
        var settings = ServerConfiguration(data: Configuration.current.home.appendingPathComponent("server", isDirectory: true))
        if let config {
            let url = URL(fileURLWithPath: config)
            let text: String
            do { text = try String(contentsOf: url, encoding: .utf8) } catch { throw CommandError("\(config): cannot read: \(error.localizedDescription)") }
            do {
                settings = try ServerConfiguration.parse(text, file: config, base: url.deletingLastPathComponent(), defaults: settings)
            } catch {
                throw CommandError("\(error)")
            }
        }
        if let host { settings.host = host }
        if let port {
            guard (0...65535).contains(port) else { throw CommandError("--port must be in 0...65535, got \(port)") }
            settings.port = port
        }
        if let data { settings.data = URL(fileURLWithPath: data, isDirectory: true).standardizedFileURL }
        settings.roots += roots.map { URL(fileURLWithPath: $0, isDirectory: true).standardizedFileURL }
        for root in settings.roots where !FileManager.default.fileExists(atPath: root.path) {
            throw CommandError("input root \(root.path) does not exist")
        }
        if settings.tokenHashes.isEmpty && !settings.isLoopback {
            throw CommandError("listening on \(settings.host) needs bearer tokens (`tokens:` in the configuration); without them only a loopback address is allowed")
        }
        let registry = SluiceServer.bootstrapMetrics()
        let server: SluiceServer
        do {
            // A shared queue (--queue): the API over jobs that `sluice worker`s on other machines work on too.
            let queue = try queueOptions.url.map { _ in try queueOptions.open() }
            server = try SluiceServer(configuration: settings, modelStore: Configuration.current.modelStore, registry: registry,
                                      queue: queue, logger: Logger(label: "sluice"))
            try server.preload()
        } catch {
            throw CommandError("\(error)")
        }
        let host = settings.host, dataPath = settings.data.path
        try runAsync {
            try await server.run { port in
                log.info("listening on http://\(host):\(port) (data \(dataPath))")
            }
        }
        log.info("stopped")
    }
}
