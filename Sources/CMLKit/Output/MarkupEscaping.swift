/// `text` safe inside HTML or XML character data and quoted attribute values: `&`, `<`, `>`, `"` and `'`
/// as character references. The web UI's pages and the SVG charts escape with it.
public func markupEscaped(_ text: some StringProtocol) -> String {
    var out = ""
    out.reserveCapacity(text.utf8.count)
    for scalar in text.unicodeScalars {
        switch scalar {
        case "&": out += "&amp;"
        case "<": out += "&lt;"
        case ">": out += "&gt;"
        case "\"": out += "&quot;"
        case "'": out += "&#39;"
        default: out.unicodeScalars.append(scalar)
        }
    }
    return out
}
