import Foundation
import PoWACollector
import Testing
import Yams

/// contrib/kubernetes/powa-collector.yaml: what a cluster would run, read as Kubernetes reads
/// it, and its configuration read as the collector in the pod would read it.
@Suite("Kubernetes example", .timeLimit(.minutes(1)))
struct KubernetesExampleTests {
    /// The checkout this file is in (Tests/PoWACollectorUnitTests/ under it).
    private static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()

    /// The example's documents by kind: the manifest, and the Secret it needs, apart so that
    /// applying the manifest never overwrites a real DSN with the example's.
    private static func documents() throws -> [String: [String: Any]] {
        var byKind: [String: [String: Any]] = [:]
        for file in ["powa-collector.yaml", "secret.example.yaml"] {
            try load(file, into: &byKind)
        }
        return byKind
    }

    private static func load(_ file: String, into byKind: inout [String: [String: Any]]) throws {
        let path = packageRoot.appendingPathComponent("contrib/kubernetes/" + file).path
        let text = try String(contentsOfFile: path, encoding: .utf8)
        for document in try Yams.load_all(yaml: text) {
            let object = try #require(document as? [String: Any])
            let kind = try #require(object["kind"] as? String)
            #expect(byKind[kind] == nil, "two documents of kind \(kind)")
            #expect(file == "secret.example.yaml" ? kind == "Secret" : kind != "Secret", "\(kind) in \(file)")
            byKind[kind] = object
        }
    }

    /// `object[path[0]][path[1]]...`, each step a mapping key or a list index.
    private static func value(_ object: Any?, _ path: Any...) -> Any? {
        path.reduce(object) { current, step in
            switch (current, step) {
            case (let map as [String: Any], let key as String): map[key]
            case (let list as [Any], let index as Int) where list.indices.contains(index): list[index]
            default: nil
            }
        }
    }

    @Test("a Deployment of 2 replicas of the image of this version, as the image's non-root user")
    func deployment() throws {
        let deployment = try #require(try Self.documents()["Deployment"])
        #expect(deployment["apiVersion"] as? String == "apps/v1")
        #expect(Self.value(deployment, "spec", "replicas") as? Int == 2)
        let pod = Self.value(deployment, "spec", "template")
        let selector = Self.value(deployment, "spec", "selector", "matchLabels") as? [String: String]
        #expect(selector != nil && selector == Self.value(pod, "metadata", "labels") as? [String: String])
        #expect(Self.value(pod, "spec", "securityContext", "runAsNonRoot") as? Bool == true)
        #expect(Self.value(pod, "spec", "securityContext", "runAsUser") as? Int == 10001)
        let container = Self.value(pod, "spec", "containers", 0)
        #expect(Self.value(container, "image") as? String == "localhost/powa-collector:\(Collector.version)")
        // The root filesystem is read-only: the spool's directory is a volume of its own, writable.
        let mounts = Self.value(container, "volumeMounts") as? [[String: Any]] ?? []
        let spool = mounts.first { $0["mountPath"] as? String == SpoolSettings.defaultDirectory }
        #expect(spool != nil && spool?["readOnly"] as? Bool != true)
        let volumes = Self.value(pod, "spec", "volumes") as? [[String: Any]] ?? []
        #expect(volumes.contains { $0["name"] as? String == spool?["name"] as? String && $0["emptyDir"] != nil })
    }

    @Test("/livez and /readyz probed on the port the configuration's http.listen opens")
    func probes() throws {
        let documents = try Self.documents()
        let container = Self.value(documents["Deployment"], "spec", "template", "spec", "containers", 0)
        let ports = try #require(Self.value(container, "ports") as? [[String: Any]])
        for (probe, path) in [("livenessProbe", "/livez"), ("readinessProbe", "/readyz")] {
            #expect(Self.value(container, probe, "httpGet", "path") as? String == path)
            let port = Self.value(container, probe, "httpGet", "port")
            let number = ports.first { $0["name"] as? String == port as? String }?["containerPort"] ?? port
            let configuration = try Self.podConfiguration(documents)
            #expect(number as? Int == configuration.httpListen?.port, "\(probe) port \(String(describing: port))")
        }
    }

    @Test("the pod's configuration: the ConfigMap's file and the Secret's DSN, as the collector reads them")
    func configuration() throws {
        let documents = try Self.documents()
        let configuration = try Self.podConfiguration(documents)
        let secretDSN = try #require(Self.value(documents["Secret"], "stringData", "dsn") as? String)
        #expect(configuration.repositoryDSN == secretDSN)
        #expect(configuration.httpListen?.host == "0.0.0.0")
        // With fsGroup, the Secret's file must be readable by the group (its owner is root).
        let pod = Self.value(documents["Deployment"], "spec", "template", "spec")
        let volumes = try #require(Self.value(pod, "volumes") as? [[String: Any]])
        let mode = volumes.compactMap { Self.value($0, "secret", "defaultMode") as? Int }.first
        #expect(mode.map { $0 & 0o040 != 0 } == true)
    }

    /// The configuration the collector in the pod reads: the files its environment names,
    /// resolved through the volume mounts to the ConfigMap's and the Secret's keys.
    private static func podConfiguration(_ documents: [String: [String: Any]]) throws -> CollectorConfiguration {
        let pod = value(documents["Deployment"], "spec", "template", "spec")
        let container = value(pod, "containers", 0)
        let environment = Dictionary(
            uniqueKeysWithValues: (value(container, "env") as? [[String: Any]] ?? []).compactMap { entry in
                (entry["name"] as? String).flatMap { name in (entry["value"] as? String).map { (name, $0) } }
            })
        let mounts = value(container, "volumeMounts") as? [[String: Any]] ?? []
        let volumes = value(pod, "volumes") as? [[String: Any]] ?? []
        let scratch = "/tmp/powa-k8s-\(UInt64.random(in: 0...UInt64.max))"
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        /// Writes the file a path of the pod would show, from the volume mounted above it.
        func materialize(_ podPath: String) throws -> String {
            let mount = try #require(mounts.first { podPath.hasPrefix(($0["mountPath"] as? String ?? "") + "/") })
            let key = String(podPath.dropFirst((mount["mountPath"] as? String ?? "").count + 1))
            let volume = try #require(volumes.first { $0["name"] as? String == mount["name"] as? String })
            let content: String?
            if let name = value(volume, "configMap", "name") as? String {
                #expect(value(documents["ConfigMap"], "metadata", "name") as? String == name)
                content = value(documents["ConfigMap"], "data", key) as? String
            } else {
                let name = value(volume, "secret", "secretName") as? String
                #expect(value(documents["Secret"], "metadata", "name") as? String == name)
                content = value(documents["Secret"], "stringData", key) as? String
            }
            let local = scratch + podPath
            try FileManager.default.createDirectory(
                atPath: (local as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try #require(content, "nothing at \(podPath)").write(toFile: local, atomically: true, encoding: .utf8)
            return local
        }
        var local: [String: String] = [:]
        for variable in [ConfigurationSource.configVariable, ConfigurationSource.dsnFileVariable] {
            local[variable] = try materialize(try #require(environment[variable], "\(variable) is not set"))
        }
        return try ConfigurationSource(commandLinePath: nil, environment: local, searchPath: []).load().0
    }
}
