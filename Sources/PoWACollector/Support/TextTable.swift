/// Rows of text as aligned columns two spaces apart, the last column unpadded: the tables of
/// the `check` and `status` commands.
///
/// Widths count characters (grapheme clusters), as `String.count` does: Foundation's
/// `padding(toLength:)` counts UTF-16 units, and cut the last character of a server name that
/// held an emoji.
public enum TextTable {
    public static func lines(_ rows: [[String]]) -> [String] {
        var widths: [Int] = []
        for row in rows {
            for (column, cell) in row.enumerated() {
                if column == widths.count { widths.append(0) }
                widths[column] = max(widths[column], cell.count)
            }
        }
        return rows.map { row in
            row.enumerated().map { column, cell in
                column == row.count - 1 ? cell : cell + String(repeating: " ", count: widths[column] - cell.count)
            }
            .joined(separator: "  ")
        }
    }
}
