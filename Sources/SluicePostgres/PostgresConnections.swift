// Connections to one PostgreSQL server for a synchronous caller (the job queue's methods are synchronous:
// the pipeline's writer is a plain thread). Each call borrows an idle connection (or opens one), runs its
// statements on it through postgres-nio's EventLoopFuture interface and waits, so no Swift concurrency
// thread is ever needed to finish a call. A call whose connection breaks (the server restarted, the
// network dropped) reconnects with backoff and runs again from the start, until `reconnectTimeout`.

import Foundation
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import PostgresNIO

/// Where the queue lives: `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?sslmode=disable|require]`,
/// or `postgresql://…`; a `host=/path` query item connects over the Unix socket in that folder.
public struct PostgresLocation: Sendable, CustomStringConvertible {
    public var configuration: PostgresConnection.Configuration
    /// The URL without its password, for messages.
    public var description: String

    public init(url text: String) throws {
        guard let url = URLComponents(string: text), ["postgres", "postgresql"].contains(url.scheme ?? "") else {
            throw PostgresQueueError.badURL(text, "expected postgres://USER@HOST[:PORT]/DATABASE")
        }
        guard let user = url.user, !user.isEmpty else { throw PostgresQueueError.badURL(text, "no user name") }
        let database = String(url.path.drop(while: { $0 == "/" }))
        guard !database.isEmpty else { throw PostgresQueueError.badURL(text, "no database name") }
        let query = Dictionary((url.queryItems ?? []).map { ($0.name, $0.value ?? "") }, uniquingKeysWith: { $1 })
        let socketFolder = query["host"].flatMap { $0.hasPrefix("/") ? $0 : nil }
        let port = url.port ?? 5432
        if let socketFolder {
            configuration = .init(unixSocketPath: "\(socketFolder)/.s.PGSQL.\(port)", username: user,
                                  password: url.password, database: database)
        } else {
            guard let host = url.host, !host.isEmpty else { throw PostgresQueueError.badURL(text, "no host") }
            let tls: PostgresConnection.Configuration.TLS
            switch query["sslmode"] ?? "disable" {
            case "disable": tls = .disable
            case "require": tls = .require(try NIOSSLContext(configuration: .makeClientConfiguration()))
            case let mode: throw PostgresQueueError.badURL(text, "sslmode '\(mode)' is not disable or require")
            }
            configuration = .init(host: host, port: port, username: user, password: url.password, database: database, tls: tls)
        }
        var shown = url
        if shown.password != nil { shown.password = "***" }
        description = shown.string ?? text
    }
}

public enum PostgresQueueError: Error, CustomStringConvertible, Equatable {
    case badURL(String, String)
    case unreachable(String, seconds: Double, reason: String)
    case schemaTooNew(String, version: Int, known: Int)

    public var description: String {
        switch self {
        case .badURL(let url, let why): "queue URL '\(url)': \(why)"
        case .unreachable(let location, let seconds, let reason):
            "PostgreSQL at \(location) unreachable for \(Int(seconds)) s: \(reason)"
        case .schemaTooNew(let location, let version, let known):
            "the job queue at \(location) has schema version \(version); this sluice knows up to \(known): upgrade sluice"
        }
    }
}

/// One server's connections, lent one call at a time.
final class PostgresConnections: @unchecked Sendable {
    let location: PostgresLocation
    /// How long a call keeps trying to reach the server before it gives up.
    let reconnectTimeout: TimeInterval
    let logger: Logger
    private let group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    private let lock = NSLock()
    private var idle: [PostgresConnection] = []
    private var nextID = 0

    init(location: PostgresLocation, reconnectTimeout: TimeInterval, logger: Logger) {
        self.location = location
        self.reconnectTimeout = reconnectTimeout
        self.logger = logger
    }

    deinit {
        for connection in idle { _ = try? connection.close().wait() }
    }

    /// Runs `body` on a connection. If the connection breaks, opens a new one (waiting 0.1 s, doubling
    /// to 2 s, between tries) and runs `body` again: every body is written to be safe to repeat.
    func with<T>(_ body: (PostgresConnection) throws -> T) throws -> T {
        try with { connection, _ in try body(connection) }
    }

    /// As `with`; `body` also learns whether this is a run again after a connection broke (the earlier
    /// run's transaction may have committed without its answer arriving).
    func with<T>(_ body: (PostgresConnection, _ rerun: Bool) throws -> T) throws -> T {
        let deadline = Date().addingTimeInterval(reconnectTimeout)
        var pause = 0.1
        var rerun = false
        while true {
            let connection: PostgresConnection
            do {
                connection = try borrow()
            } catch {
                guard Date() < deadline else {
                    throw PostgresQueueError.unreachable(location.description, seconds: reconnectTimeout, reason: Self.reason(error))
                }
                if pause == 0.1 {  // said once per call, not at every try
                    logger.warning("cannot reach PostgreSQL at \(location): \(Self.reason(error)); retrying for up to \(Int(reconnectTimeout)) s")
                }
                Thread.sleep(forTimeInterval: pause)
                pause = min(pause * 2, 2)
                continue
            }
            do {
                let result = try body(connection, rerun)
                giveBack(connection)
                return result
            } catch {
                guard Self.isConnectionLoss(error) || connection.isClosed else {
                    giveBack(connection)
                    throw error
                }
                _ = try? connection.close().wait()
                guard Date() < deadline else {
                    throw PostgresQueueError.unreachable(location.description, seconds: reconnectTimeout, reason: Self.reason(error))
                }
                logger.warning("lost the connection to PostgreSQL at \(location): \(Self.reason(error)); reconnecting")
                rerun = true
            }
        }
    }

    /// Runs `body` inside BEGIN … COMMIT on one connection; ROLLBACK when it throws.
    func transaction<T>(_ body: (PostgresConnection) throws -> T) throws -> T {
        try transaction { connection, _ in try body(connection) }
    }

    func transaction<T>(_ body: (PostgresConnection, _ rerun: Bool) throws -> T) throws -> T {
        try with { connection, rerun in
            _ = try connection.query("BEGIN", logger: logger).wait()
            do {
                let result = try body(connection, rerun)
                _ = try connection.query("COMMIT", logger: logger).wait()
                return result
            } catch {
                if !connection.isClosed { _ = try? connection.query("ROLLBACK", logger: logger).wait() }
                throw error
            }
        }
    }

    /// Opens a connection that is not lent to any call (LISTEN needs one of its own).
    func open() throws -> PostgresConnection {
        let id = lock.withLock { nextID += 1; return nextID }
        return try PostgresConnection.connect(on: group.next(), configuration: location.configuration, id: id, logger: logger).wait()
    }

    private func borrow() throws -> PostgresConnection {
        while let connection = lock.withLock({ idle.popLast() }) {
            if !connection.isClosed { return connection }
        }
        return try open()
    }

    private func giveBack(_ connection: PostgresConnection) {
        guard !connection.isClosed else { return }
        let extra: PostgresConnection? = lock.withLock {
            if idle.count >= 8 { return connection }
            idle.append(connection)
            return nil
        }
        if let extra { _ = try? extra.close().wait() }
    }

    /// The server went away: closed connections, refused connects, and the server's own shutdown codes
    /// (57P01 admin_shutdown, 57P02 crash_shutdown, 57P03 cannot_connect_now).
    static func isConnectionLoss(_ error: any Error) -> Bool {
        if let error = error as? PSQLError {
            switch error.code {
            case .serverClosedConnection, .clientClosedConnection, .connectionError, .uncleanShutdown: return true
            case .server: return ["57P01", "57P02", "57P03"].contains(error.serverInfo?[.sqlState] ?? "")
            default: return false
            }
        }
        return error is ChannelError || error is IOError || error is NIOConnectionError
    }

    /// One line for a driver error: the server's own message where there is one.
    static func reason(_ error: any Error) -> String {
        if let error = error as? PSQLError {
            if let message = error.serverInfo?[.message] {
                return "\(message) (SQLSTATE \(error.serverInfo?[.sqlState] ?? "?"))"
            }
            if let underlying = error.underlying { return "\(underlying)" }
            return "\(error.code)"
        }
        return "\(error)"
    }
}

/// LISTENs on the queue's channel over a connection of its own and lets waiters know when anything
/// was announced. Opened at the first wait; a broken connection is opened again at the next one.
final class ChangeListener: @unchecked Sendable {
    private let connections: PostgresConnections
    private let condition = NSCondition()
    private var connection: PostgresConnection?
    private var changes = 0

    init(connections: PostgresConnections) { self.connections = connections }

    deinit { _ = try? connection?.close().wait() }

    /// Returns at the first announcement after the call, or after `timeout`.
    func wait(timeout: TimeInterval) {
        let deadline = Date().addingTimeInterval(max(0, timeout))
        guard ensureListening() else {
            Thread.sleep(until: deadline)  // the server is away: the caller's next query will wait for it
            return
        }
        condition.lock()
        defer { condition.unlock() }
        let seen = changes
        while changes == seen, condition.wait(until: deadline) {}
    }

    private func ensureListening() -> Bool {
        condition.lock()
        if let connection, !connection.isClosed { condition.unlock(); return true }
        condition.unlock()
        guard let opened = try? connections.open() else { return false }
        opened.addListener(channel: PostgresJobQueue.channel) { [weak self] _, _ in self?.changed() }
        // The LISTEN is sent by the listener above; a round trip makes sure it is in force.
        guard (try? opened.query("SELECT 1", logger: connections.logger).wait()) != nil else {
            _ = try? opened.close().wait()
            return false
        }
        condition.lock()
        let previous = connection
        connection = opened
        condition.unlock()
        if let previous { _ = try? previous.close().wait() }
        return true
    }

    private func changed() {
        condition.lock()
        changes += 1
        condition.broadcast()
        condition.unlock()
    }
}
