import Foundation
import NIOFileSystem
import PostgresClient

/// What a worker last had from the repository to read a snapshot into the spool with.
final class SpoolBasisMemory {
    var value: SpoolBasis?
    /// Said once that there is none.
    var warned = false
}

extension Worker {
    /// How landing the server's spool ended; each case with the server's `snapts` after the
    /// last file that landed, if any did.
    enum SpoolLanding {
        /// Nothing is left to land.
        case landed(SnapshotMark?)
        /// The repository cannot take them now: the rest wait (and this snapshot joins them).
        case repositoryDown(SnapshotMark?)
        /// The snapshot ends here (the server changes hands, the worker stops).
        case ended(SnapshotResult, SnapshotMark?)
    }

    /// A snapshot due while the server's spool is not empty: it is read now, on time, into the
    /// spool behind the others; then the spool lands, until the next snapshot is near. So a
    /// backlog that takes several periods to land (a whole fleet's, at the pace of the slots)
    /// never costs a period: each is read when due, and lands in its turn.
    func catchUp(
        _ spool: SnapshotSpool, remote: PoWASession, plan: WorkerCycle.SnapshotPlan, knownStatements: KnownStatements?,
        basis: SpoolBasisMemory
    ) async -> SnapshotResult {
        let started = ContinuousClock.now
        let read = await spoolSnapshot(spool, remote: remote, plan: plan, knownStatements: knownStatements, basis: basis)
        guard case .spooled = read.end, read.message == nil else { return read }
        let until = started + .seconds(server.frequency) * 0.8
        switch await landSpool(spool, remote: remote, plan: plan, knownStatements: knownStatements, until: until) {
        case .landed(let mark?), .repositoryDown(let mark?):
            // Older snapshots landed: the schedule takes it as this period's landing.
            var result = SnapshotResult(end: .landed(mark, began: started))
            result.spoolMark = mark
            return result
        case .landed(nil), .repositoryDown(nil):
            return read
        case .ended(var result, let mark):
            result.spoolMark = mark
            return result
        }
    }

    /// Lands the server's spooled snapshots, oldest first, each as a live snapshot lands (in a
    /// regular slot: the landing of a whole fleet's spool goes at the pace of the slots, the
    /// live snapshots of other servers interleaved), before this worker takes any other; none
    /// begins after `until`.
    func landSpool(
        _ spool: SnapshotSpool, remote: PoWASession, plan: WorkerCycle.SnapshotPlan, knownStatements: KnownStatements?,
        until: ContinuousClock.Instant? = nil
    ) async -> SpoolLanding {
        // Checking and replaying files (their hash, their JSON) is CPU work of up to the
        // spool's size: on the pool, not on the sockets' thread every worker waits on.
        await withTaskExecutorPreference(globalConcurrentExecutor) {
            await landSpoolFiles(spool, remote: remote, plan: plan, knownStatements: knownStatements, until: until)
        }
    }

    private func landSpoolFiles(
        _ spool: SnapshotSpool, remote: PoWASession, plan: WorkerCycle.SnapshotPlan, knownStatements: KnownStatements?,
        until: ContinuousClock.Instant?
    ) async -> SpoolLanding {
        var mark = plan.mark
        var landedAny = false
        let files = await spool.pending(serverID: server.id)
        for (index, file) in files.enumerated() {
            if Task.isCancelled { return .ended(.failed("snapshot interrupted"), landedAny ? mark : nil) }
            if let until, ContinuousClock.now >= until { break }
            guard spool.claim(file) else { continue }  // dropped meanwhile
            let failure: SpoolLandingDecision.Failure
            var elsewhere: (SnapshotMark, Double?)?
            switch await landSpooled(file, remote: remote, plan: plan, mark: mark, knownStatements: knownStatements) {
            case .landed(let produced):
                await spool.landed(file, base: mark?.text, produced: produced?.text)
                mark = produced ?? mark
                landedAny = true
                continue
            case .notFollowing:
                failure = .landedElsewhere
            case .failed(let kind, let error):
                failure = kind
                if case .superseded(.landedElsewhere(let newMark, let secondsAgo))? = error?.kind {
                    elsewhere = (newMark, secondsAgo)
                }
                if kind == .refused || kind == .damaged {
                    logger.error(
                        "spooled snapshot not landed",
                        metadata: ["file": "\(file.path)", "error": "\(error.map { "\($0)" } ?? "")"])
                }
            }
            let attempts = spool.release(file, failed: failure == .refused)
            switch SpoolLandingDecision.after(failure, attempts: attempts) {
            case .keepAndSpool:
                return .repositoryDown(landedAny ? mark : nil)
            case .drop(let reason):
                await spool.drop([file], reason: reason)
            case .dropRest:
                await spool.drop(Array(files[index...]), reason: .moved)
                if let (newMark, secondsAgo) = elsewhere {
                    return .ended(SnapshotResult(end: .landedElsewhere(newMark, secondsAgo: secondsAgo)), landedAny ? mark : nil)
                }
                return .landed(landedAny ? mark : nil)
            case .stop:
                let end: WorkerCycle.SnapshotEnd = failure == .cancelled ? .failed(repositoryDown: false) : .heldBack
                return .ended(SnapshotResult(end: end), landedAny ? mark : nil)
            }
        }
        return .landed(landedAny ? mark : nil)
    }

    /// How one spooled snapshot's landing went.
    private enum SpooledLanding {
        case landed(SnapshotMark?)
        /// Its base is not where the server stands now (another collector landed since).
        case notFollowing
        case failed(SpoolLandingDecision.Failure, SnapshotError?)
    }

    /// One spooled snapshot, checked whole first, then landed in a regular slot on a pooled
    /// repository session.
    private func landSpooled(
        _ file: SnapshotSpool.File, remote: PoWASession, plan: WorkerCycle.SnapshotPlan, mark: SnapshotMark?,
        knownStatements: KnownStatements?
    ) async -> SpooledLanding {
        let reader = SpoolReader(path: file.path)
        let contents: SpoolReader.Contents
        do {
            contents = try await reader.verify()
        } catch let damage as SpoolDamage {
            return .failed(.damaged, SnapshotError(.spoolDamaged, step: .begin, underlying: damage))
        } catch {
            if Task.isCancelled { return .failed(.cancelled, nil) }
            return .failed(.refused, SnapshotError(.spoolDamaged, step: .begin, underlying: error))
        }
        let header = contents.header
        guard header.serverID == server.id, header.hostname == server.hostname, header.port == server.port,
            context.spool?.follows(serverID: server.id, base: header.baseMark, current: mark?.text) ?? false
        else { return .notFollowing }
        do {
            return try await context.limiter.withSlot(.regular) { _ in
                let deadline = ContinuousClock.now + context.snapshotTimeout
                return await withRepository(failing: "spooled snapshot not landed yet") { repository in
                    do {
                        let sources = try await repository.snapshotSources(serverID: server.id, deadline: deadline)
                        let snapshot = remoteSnapshot(
                            sources: sources, deadline: deadline, fence: plan.fence, expectedMark: mark, silence: nil,
                            knownStatements: knownStatements)
                        let outcome = try await snapshot.landSpooled(
                            reader, contents: contents, remote: remote.connection.isHealthy ? remote : nil,
                            repository: repository)
                        // (The known statements stay: the repository knows at least as much now,
                        // and the repair covers any it lost.)
                        logger.debug(
                            "spooled snapshot landed",
                            metadata: ["file": "\(file.path)", "sources": "\(outcome.landedSources)"])
                        return .landed(outcome.mark)
                    } catch {
                        // (Untagged: reading the sources.)
                        let error =
                            error as? SnapshotError
                            ?? SnapshotError(.repositoryFailed, side: .repository, step: .begin, underlying: error)
                        return .failed(Self.landingFailure(error, repositoryHealthy: repository.connection.isHealthy), error)
                    }
                } ?? .failed(.outage, nil)
            }
        } catch {
            return .failed(.cancelled, nil)
        }
    }

    /// What a landing's error means for the spool.
    private static func landingFailure(_ error: SnapshotError, repositoryHealthy: Bool) -> SpoolLandingDecision.Failure {
        if Task.isCancelled { return .cancelled }
        switch error.kind {
        case .cancelled: return .cancelled
        case .spoolDamaged: return .damaged
        case .superseded(.landedElsewhere): return .landedElsewhere
        case .superseded: return .superseded
        case .repositoryFailed where !repositoryHealthy || RepositoryOutage.matches(error.underlying): return .outage
        default: return .refused
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
            logger.log(level: basis.warned ? .debug : .warning, "\(message)")
            basis.warned = true
            return SnapshotResult(end: .spooled, message: message)
        }
        let spooling: (SnapshotResult, cleanups: [(source: String, sql: String)])
        do {
            spooling = try await context.limiter.withSlot(plan.lane) { slot in
                let silence = slot.silenceWatch(planned: plan.silenceLimit, timeout: context.snapshotTimeout)
                // (The file's hash is computed as it is written: on the pool, as a landing.)
                return await withTaskExecutorPreference(globalConcurrentExecutor) {
                    await spoolSnapshot(
                        spool, remote: remote, plan: plan, knownStatements: knownStatements, basis: sources,
                        silence: silence)
                }
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
        let snapshot = remoteSnapshot(
            sources: basis.sources, deadline: .now + context.snapshotTimeout, fence: nil, expectedMark: nil,
            silence: silence, knownStatements: knownStatements)
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
                SpoolSummary(errors: outcome.errors, elidedStatements: Array(outcome.elidedStatements)),
                directory: file.path.removingLastComponent())
            await spool.spooled(
                SnapshotSpool.File(serverID: server.id, path: file.path, bytes: bytes, takenAt: file.takenAt))
            logger.debug("snapshot spooled", metadata: ["file": "\(file.path)", "bytes": "\(bytes)"])
            return (SnapshotResult(end: .spooled), outcome.cleanups)
        } catch {
            writer.discard()
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
