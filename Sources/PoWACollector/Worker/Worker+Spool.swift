import Foundation
import NIOFileSystem
import PostgresClient

/// What a worker last had from the repository to read a snapshot into the spool with.
final class SpoolBasisMemory {
    var value: SpoolBasis?
}

extension Worker {
    /// How landing the server's spool ended.
    enum SpoolLanding {
        /// Nothing is left to land; `mark`: the server's `snapts` after the last that landed.
        case landed(SnapshotMark?)
        /// The repository could not take them: the rest wait (and this snapshot joins them).
        case repositoryDown(SnapshotMark?)
        /// The snapshot ends here (the server changes hands, the worker stops).
        case ended(SnapshotResult)
    }

    /// Lands the server's spooled snapshots, oldest first, each as a live snapshot lands (in a
    /// regular slot: the landing of a whole fleet's spool goes at the pace of the slots, the
    /// live snapshots of other servers interleaved), before this worker takes any other.
    func landSpool(
        _ spool: SnapshotSpool, remote: PoWASession, plan: WorkerCycle.SnapshotPlan, knownStatements: KnownStatements?
    ) async -> SpoolLanding {
        var mark = plan.mark
        let files = await spool.pending(serverID: server.id)
        for (index, file) in files.enumerated() {
            if Task.isCancelled { return .ended(.failed("snapshot interrupted")) }
            let reader = SpoolReader(path: file.path)
            let contents: SpoolReader.Contents
            do {
                contents = try await reader.verify()
            } catch {
                logger.error("spooled snapshot unreadable: skipped", metadata: ["file": "\(file.path)", "error": "\(error)"])
                await spool.drop([file], reason: .damaged)
                continue
            }
            let header = contents.header
            guard header.serverID == server.id, header.hostname == server.hostname, header.port == server.port else {
                logger.warning("spooled snapshot of another server: dropped", metadata: ["file": "\(file.path)"])
                await spool.drop([file], reason: .moved)
                continue
            }
            guard spool.follows(serverID: server.id, base: header.baseMark, current: mark?.text) else {
                // Snapshots landed that this spool does not follow (another collector's):
                // these would land out of order.
                await spool.drop(Array(files[index...]), reason: .moved)
                return .landed(mark)
            }
            spool.beginLanding(file)
            let outcome = await landSpooled(
                file, reader: reader, contents: contents, remote: remote, plan: plan, mark: mark,
                knownStatements: knownStatements)
            switch outcome {
            case .success(let landed):
                await spool.landed(file, base: mark?.text, produced: landed?.text)
                mark = landed ?? mark
            case .failure(let error):
                spool.endLanding(file)
                switch error.kind {
                case .spoolDamaged:
                    await spool.drop([file], reason: .damaged)
                case .superseded(.landedElsewhere(let newMark, let secondsAgo)):
                    await spool.drop(Array(files[index...]), reason: .moved)
                    return .ended(SnapshotResult(end: .landedElsewhere(newMark, secondsAgo: secondsAgo)))
                case .superseded:
                    return .ended(SnapshotResult(end: .heldBack))
                case .cancelled:
                    return .ended(.failed("snapshot interrupted"))
                case .repositoryFailed where error.underlying is RepositoryUnreachable:
                    return .repositoryDown(mark)
                case .repositoryFailed, .timedOut, .remoteLost, .remoteFailed, .remoteSilent:
                    // The repository went away while it landed: the next attempt lands it.
                    if error.side == .repository, !(error.underlying is PostgresError) || isConnectionError(error) {
                        return .repositoryDown(mark)
                    }
                    // The repository refused it: kept, it would stop every snapshot of the
                    // server. Reported, and dropped.
                    logger.error("spooled snapshot refused by the repository: dropped", metadata: ["error": "\(error)"])
                    await recordErrors(["spooled snapshot refused: \(error)"], once: false)
                    await spool.drop([file], reason: .refused)
                }
            }
        }
        return .landed(mark)
    }

    /// Whether a landing's error was the repository's session breaking.
    private func isConnectionError(_ error: SnapshotError) -> Bool {
        guard let underlying = error.underlying as? PostgresError else { return false }
        return underlying.sqlState == nil || underlying.sqlState?.hasPrefix("08") == true
            || underlying.sqlState?.hasPrefix("57P") == true
    }

    /// One spooled snapshot, in a regular slot, on a pooled repository session; its mark.
    private func landSpooled(
        _ file: SnapshotSpool.File, reader: SpoolReader, contents: SpoolReader.Contents, remote: PoWASession,
        plan: WorkerCycle.SnapshotPlan, mark: SnapshotMark?, knownStatements: KnownStatements?
    ) async -> Result<SnapshotMark?, SnapshotError> {
        do {
            return try await context.limiter.withSlot(.regular) { _ in
                let deadline = ContinuousClock.now + context.snapshotTimeout
                return await withRepository(failing: "spooled snapshot not landed yet") { repository in
                    let sources: [SnapshotSource]
                    do {
                        sources = try await repository.snapshotSources(serverID: server.id, deadline: deadline)
                    } catch {
                        return .failure(SnapshotError(.repositoryFailed, side: .repository, step: .begin, underlying: error))
                    }
                    let snapshot = RemoteSnapshot(
                        server: server, workerName: name, sources: sources, catalogRefresh: nil, deadline: deadline,
                        connectTimeout: context.connectTimeout,
                        applicationName: ApplicationName.workerRepository(name), connectionOptions: [],
                        knownStatements: knownStatements, metrics: nil, fence: plan.fence, expectedMark: mark,
                        silence: nil, report: report, logger: logger)
                    do {
                        let outcome = try await snapshot.landSpooled(
                            reader, contents: contents, remote: remote.connection.isHealthy ? remote : nil,
                            repository: repository)
                        // Its texts were left out against what the repository knew then.
                        knownStatements?.forget()
                        logger.debug(
                            "spooled snapshot landed",
                            metadata: ["file": "\(file.path)", "sources": "\(outcome.landedSources)"])
                        return .success(outcome.mark)
                    } catch {
                        return .failure(
                            error as? SnapshotError
                                ?? SnapshotError(.repositoryFailed, side: .repository, step: .commit, underlying: error))
                    }
                }
                    ?? .failure(
                        SnapshotError(.repositoryFailed, side: .repository, step: .begin, underlying: RepositoryUnreachable()))
            }
        } catch {
            return .failure(SnapshotError(.cancelled, step: .begin))
        }
    }

    /// Reads the snapshot into the spool, with the sources the repository gave last, in a slot
    /// of the plan's lane (the slots bound the snapshots in flight, their memory with them, and
    /// a silent remote leaves its slot as in a live snapshot); the cleanups run once the file
    /// is synced to disk.
    func spoolSnapshot(
        _ spool: SnapshotSpool, remote: PoWASession, plan: WorkerCycle.SnapshotPlan, knownStatements: KnownStatements?,
        basis: SpoolBasisMemory
    ) async -> SnapshotResult {
        guard let sources = basis.value else {
            let message =
                "snapshot lost: the repository cannot take it, and none of the server's snapshots landed since its worker started (the sources to read are unknown)"
            logger.warning("\(message)")
            return SnapshotResult(end: .spooled, message: message)
        }
        let spooling: (SnapshotResult, cleanups: [(source: String, sql: String)])
        do {
            spooling = try await context.limiter.withSlot(plan.lane) { slot in
                let silence = plan.silenceLimit.map {
                    slot.silenceWatch(limit: slot.lane == .regular ? $0 : context.snapshotTimeout)
                }
                return await spoolSnapshot(
                    spool, remote: remote, plan: plan, knownStatements: knownStatements, basis: sources, silence: silence)
            }
        } catch {
            return .failed("snapshot interrupted")  // cancelled while waiting for a slot
        }
        // The file is on disk: what the cleanups reset is safe.
        await runCleanups(spooling.cleanups, remote: remote)
        return spooling.0
    }

    private func spoolSnapshot(
        _ spool: SnapshotSpool, remote: PoWASession, plan: WorkerCycle.SnapshotPlan, knownStatements: KnownStatements?,
        basis: SpoolBasis, silence: SilenceWatch?
    ) async -> (SnapshotResult, cleanups: [(source: String, sql: String)]) {
        let started = ContinuousClock.now
        let snapshot = RemoteSnapshot(
            server: server, workerName: name, sources: basis.sources, catalogRefresh: nil,
            deadline: started + context.snapshotTimeout, connectTimeout: context.connectTimeout,
            applicationName: ApplicationName.workerRepository(name), connectionOptions: connectionOptions,
            knownStatements: knownStatements, metrics: context.metrics, fence: nil, expectedMark: nil, silence: silence,
            report: report, logger: logger)
        let writer: SpoolWriter
        let file: (path: FilePath, takenAt: Double)
        do {
            file = try await spool.newFile(serverID: server.id)
            writer = try await SpoolWriter.create(
                at: file.path,
                header: SpoolHeader(
                    serverID: server.id, hostname: server.hostname, port: server.port, takenAt: file.takenAt,
                    serverVersionNumber: remote.connection.serverVersionNumber, baseMark: plan.mark?.text))
        } catch {
            let message = "snapshot lost: could not write the spool: \(error)"
            logger.error("\(message)")
            return (SnapshotResult(end: .spooled, message: message), [])
        }
        do {
            let outcome = try await snapshot.spool(remote: remote, into: writer, basis: basis)
            let bytes = try await writer.finish(
                SpoolSummary(errors: outcome.errors, elidedStatements: Array(outcome.elidedStatements)))
            await spool.spooled(
                SnapshotSpool.File(serverID: server.id, path: file.path, bytes: bytes, takenAt: file.takenAt))
            logger.debug("snapshot spooled", metadata: ["file": "\(file.path)", "bytes": "\(bytes)"])
            return (SnapshotResult(end: .spooled), outcome.cleanups)
        } catch {
            await writer.discard()
            let message = "snapshot lost: could not spool it: \(error)"
            logger.error("\(message)")
            switch (error as? SnapshotError)?.kind {
            case .remoteLost?: return (SnapshotResult(end: .remoteLost, message: message), [])
            case .timedOut?: return (SnapshotResult(end: .timedOut(), message: message), [])
            case .remoteSilent(let limit)?: return (SnapshotResult(end: .timedOut(silentFor: limit), message: message), [])
            case .cancelled?: return (.failed("snapshot interrupted"), [])
            default: return (SnapshotResult(end: .spooled, message: message), [])
            }
        }
    }
}

/// No repository session could be had.
struct RepositoryUnreachable: Error, CustomStringConvertible {
    var description: String { "could not connect to the repository" }
}
