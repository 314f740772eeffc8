import CMLKit

/// The small edits ClearML's task documents need, on `JSON` values: the SDK sends partial documents
/// (`tasks.edit` with only `script`, `runtime.progress`…) that are merged into what was kept.
extension JSON {
    /// `other`'s members over this object's, objects merged member by member, anything else replaced.
    func merged(with other: JSON) -> JSON {
        guard case .object(var members) = self, case .object(let changes) = other else { return other }
        for (key, value) in changes {
            if let index = members.firstIndex(where: { $0.0 == key }) {
                members[index].1 = members[index].1.merged(with: value)
            } else {
                members.append((key, value))
            }
        }
        return .object(members)
    }

    /// The member at a dotted path (`script.diff`).
    func at(_ path: String) -> JSON? {
        var value: JSON? = self
        for part in path.split(separator: ".") { value = value?[String(part)] }
        return value
    }

    /// Only the members at `paths` (ClearML's `only_fields`, dotted paths), nested as in the object.
    func selecting(_ paths: [String]) -> JSON {
        var result = JSON.object([])
        for path in paths {
            let parts = path.split(separator: ".").map(String.init)
            guard let value = at(path), !parts.isEmpty else { continue }
            result = result.merged(with: parts.reversed().reduce(value) { inner, key in .object([(key, inner)]) })
        }
        return result
    }

    /// A string, or a list of strings (ClearML takes either for ids, names and statuses).
    var strings: [String] {
        switch self {
        case .string(let text): [text]
        case .array(let items): items.compactMap(\.stringValue)
        default: []
        }
    }

    var number: Double? {
        switch self {
        case .int(let value): Double(value)
        case .double(let value): value
        case .string(let text): Double(text)
        default: nil
        }
    }

    var bool: Bool? {
        if case .bool(let value) = self { return value }
        return nil
    }

    /// What a parameter's text is in ClearML's hyperparameters: the text a string holds, else the JSON.
    var text: String {
        stringValue ?? serialized
    }
}
