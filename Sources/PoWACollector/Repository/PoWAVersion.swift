/// An extension version such as `4.1.4` (or `4.2devel`), parsed in Swift rather than with SQL
/// string functions, so no server setting (`standard_conforming_strings`) can change it.
public struct PoWAVersion: Sendable, Hashable, Comparable, CustomStringConvertible {
    public let major: Int
    public let minor: Int
    public let patch: Int

    public init(major: Int, minor: Int, patch: Int = 0) {
        self.major = major
        self.minor = minor
        self.patch = patch
    }

    /// Parses `MAJOR[.MINOR[.PATCH]]`, ignoring any suffix after the digits of a part
    /// (`4.2devel`, `4.1.0beta1`); nil when it does not start with a number.
    public init?(_ text: String) {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false).map { Int($0.prefix(while: \.isNumber)) }
        guard let major = parts.first ?? nil else { return nil }
        self.major = major
        self.minor = parts.count > 1 ? (parts[1] ?? 0) : 0
        self.patch = parts.count > 2 ? (parts[2] ?? 0) : 0
    }

    /// The oldest powa the collector works with.
    public static let minimum = PoWAVersion(major: 4, minor: 0)

    /// Whether two versions share major and minor, as the repository and a remote must.
    public func isCompatible(with other: PoWAVersion) -> Bool {
        major == other.major && minor == other.minor
    }

    public static func < (lhs: PoWAVersion, rhs: PoWAVersion) -> Bool {
        (lhs.major, lhs.minor, lhs.patch) < (rhs.major, rhs.minor, rhs.patch)
    }

    public var description: String { "\(major).\(minor).\(patch)" }
}
