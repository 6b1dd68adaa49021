import Foundation
import Glibc
import Synchronization

/// A TCP proxy on loopback, in front of one server of a test bed, that a test can blackhole:
/// what a DBA meets when a firewall, a NAT or a VM stall drops a connection's packets while
/// both ends still believe it open.
///
/// `stall()` freezes every connection open at that moment for good: bytes in both directions
/// are read and dropped, so the peers see silence, not an error (TCP keepalives cannot notice
/// it either, as the proxy's kernel answers them). Connections made while stalled are accepted
/// and frozen the same way. `heal()` lets new connections through again; the frozen ones stay
/// frozen, as a blackholed connection does once its state is lost: only a client that notices
/// and reconnects recovers. A client closing a connection closes its other side, so the
/// servers' sessions end with the client's.
///
/// One thread per direction of each connection, with blocking I/O: a test opens a handful.
public final class FaultProxy: Sendable {
    /// The port to connect to instead of the server's.
    public let port: Int
    private let targetPort: Int
    private let listener: LoopbackListener

    private struct State {
        var stalled = false
        /// New connections are frozen, the open ones flow.
        var stallingNew = false
        var closed = false
        /// Every open connection: its two descriptors, and whether it is frozen.
        var connections: [Int: Link] = [:]
        var nextID = 0
    }

    private struct Link {
        let client: Int32
        /// -1 for a connection accepted while stalled: it never reaches the server.
        let server: Int32
        var frozen: Bool
        /// Pumps still running; the last one to end closes both descriptors.
        var pumps: Int
    }

    private let state = Mutex(State())

    /// Starts forwarding 127.0.0.1:`port` to 127.0.0.1:`targetPort`.
    public init(targetPort: Int) throws {
        listener = try LoopbackListener()
        port = listener.port
        self.targetPort = targetPort
        let thread = Thread { [self] in acceptLoop() }
        thread.name = "fault-proxy-accept"
        thread.start()
    }

    /// Freezes every open connection, and every new one until `heal()`.
    public func stall() {
        state.withLock { state in
            state.stalled = true
            for id in state.connections.keys { state.connections[id]?.frozen = true }
        }
    }

    /// Freezes every new connection (until `heal()`), while the open ones flow: a server that
    /// stops accepting sessions, or a partition that began after they were opened.
    public func stallNewConnections() {
        state.withLock { $0.stallingNew = true }
    }

    /// New connections reach the server again; frozen ones stay frozen.
    public func heal() {
        state.withLock { state in
            state.stalled = false
            state.stallingNew = false
        }
    }

    /// Stops accepting and ends every connection (its threads hold it until then).
    public func close() {
        // Under the lock: a pump closes its descriptors under it too, so none of these can have
        // been closed and reused by another socket of the process meanwhile.
        state.withLock { state in
            state.closed = true
            shutdown(listener.fd, Int32(SHUT_RDWR))
            for link in state.connections.values {
                shutdown(link.client, Int32(SHUT_RDWR))
                if link.server >= 0 { shutdown(link.server, Int32(SHUT_RDWR)) }
            }
        }
    }

    private func acceptLoop() {
        while true {
            let client = accept(listener.fd, nil, nil)
            if client < 0 {
                if errno == EINTR || errno == ECONNABORTED { continue }
                break
            }
            _ = fcntl(client, F_SETFD, FD_CLOEXEC)
            let stalled = state.withLock { $0.stalled || $0.stallingNew }
            let server = stalled ? -1 : connectToTarget()
            if !stalled && server < 0 {
                _ = Glibc.close(client)
                continue
            }
            let id = state.withLock { state -> Int? in
                guard !state.closed else { return nil }
                state.nextID += 1
                state.connections[state.nextID] = Link(
                    client: client, server: server, frozen: stalled, pumps: server >= 0 ? 2 : 1)
                return state.nextID
            }
            guard let id else {
                _ = Glibc.close(client)
                if server >= 0 { _ = Glibc.close(server) }
                break
            }
            startPump(id: id, from: client, to: server)
            if server >= 0 { startPump(id: id, from: server, to: client) }
        }
        listener.close()
    }

    private func connectToTarget() -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return -1 }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = UInt16(targetPort).bigEndian
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard connected == 0 else {
            _ = Glibc.close(fd)
            return -1
        }
        return fd
    }

    /// Copies `source` to `destination` (-1: nowhere) while the connection is not frozen,
    /// drops what it reads once it is; at the end of `source`, ends `destination` too.
    private func startPump(id: Int, from source: Int32, to destination: Int32) {
        let thread = Thread { [self] in
            var buffer = [UInt8](repeating: 0, count: 65536)
            pumping: while true {
                let count = buffer.withUnsafeMutableBytes { read(source, $0.baseAddress, $0.count) }
                if count < 0 && errno == EINTR { continue }
                if count <= 0 { break }
                let frozen = state.withLock { $0.connections[id]?.frozen ?? true }
                if frozen || destination < 0 { continue }
                var offset = 0
                while offset < count {
                    // (MSG_NOSIGNAL: a peer gone must not kill the test process with SIGPIPE.)
                    let written = buffer.withUnsafeBytes {
                        send(destination, $0.baseAddress! + offset, count - offset, Int32(MSG_NOSIGNAL))
                    }
                    if written < 0 && errno == EINTR { continue }
                    if written <= 0 { break pumping }
                    offset += written
                }
            }
            if destination >= 0 { shutdown(destination, Int32(SHUT_RDWR)) }
            shutdown(source, Int32(SHUT_RDWR))
            state.withLock { state in
                state.connections[id]?.pumps -= 1
                guard let link = state.connections[id], link.pumps == 0 else { return }
                state.connections[id] = nil
                _ = Glibc.close(link.client)
                if link.server >= 0 { _ = Glibc.close(link.server) }
            }
        }
        thread.name = "fault-proxy-pump"
        thread.stackSize = 256 * 1024
        thread.start()
    }
}
