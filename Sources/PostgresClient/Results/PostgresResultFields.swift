import CLibPQ

/// Reads a `PGresult` into Swift values at once, so that no C pointer outlives `PQclear`.
enum PostgresResultFields {
    /// The error fields used here (libpq's `PG_DIAG_*` codes).
    enum Field: UInt8 {
        case severity = 86  // 'V', non-localized severity
        case sqlState = 67  // 'C'
        case primaryMessage = 77  // 'M'
        case detail = 68  // 'D'
        case hint = 72  // 'H'
    }

    static func field(_ result: OpaquePointer, _ field: Field) -> String? {
        PQresultErrorField(result, Int32(field.rawValue)).map { String(cString: $0) }
    }

    /// The server error a failed result carries. Not masked: the server never saw a password
    /// of ours in a statement, and masking by substring would garble names that happen to
    /// contain one.
    static func error(_ result: OpaquePointer) -> PostgresError {
        let message =
            field(result, .primaryMessage)
            ?? PQresultErrorMessage(result).map { String(cString: $0).trimmedMessage } ?? "unknown error"
        return PostgresError(
            code: .server,
            message: message,
            sqlState: field(result, .sqlState),
            detail: field(result, .detail),
            hint: field(result, .hint)
        )
    }

    /// The rows, column names and command tag of a successful result.
    static func queryResult(_ result: OpaquePointer) -> QueryResult {
        let rowCount = PQntuples(result)
        let columnCount = PQnfields(result)
        var rows: [PostgresRow] = []
        rows.reserveCapacity(Int(rowCount))
        for row in 0..<rowCount {
            rows.append(
                PostgresRow(
                    values: (0..<columnCount).map { column in
                        PQgetisnull(result, row, column) == 1 ? nil : String(cString: PQgetvalue(result, row, column))
                    }))
        }
        return QueryResult(rows: rows, commandTag: String(cString: PQcmdStatus(result)))
    }
}
