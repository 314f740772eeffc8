import CMLKit

/// A dataset's lineage drawn as SVG on the server: versions as boxes, the runs that made and used them
/// as round boxes, arrows from what came first to what came of it (parent → child, the run that made
/// a version → the version, a version → a run that used it), so a run that read one version and
/// made another sits between them. Columns are generations (the longest chain of arrows before a
/// node); each node links to its page. Every label goes through `HTML`, as in the pages.
enum LineageGraph {
    static let nodeWidth = 180, nodeHeight = 44, columnGap = 70, rowGap = 20, margin = 10

    enum Kind: String { case version, missing, run }

    struct Node {
        var key: String
        var kind: Kind
        var label: String
        var detail: String
        var title: String
        var href: Href?
        var current = false
        var column = 0
        var row = 0
    }

    struct Edge {
        var from: String
        var to: String
        /// `parent`, `made` or `used`.
        var kind: String
    }

    /// `runs`: the runs the token sees; the others are left out.
    static func svg(_ graph: Lineage.Graph, dataset: String, runs: [String: Run]) -> HTML {
        var (nodes, edges) = build(graph, dataset: dataset, runs: runs)
        guard !nodes.isEmpty else { return "<p class=\"muted\">No versions.</p>" }
        layOut(&nodes, edges)
        let columns = (nodes.map(\.column).max() ?? 0) + 1
        let rows = (Dictionary(grouping: nodes, by: \.column).values.map(\.count).max() ?? 1)
        let byKey = Dictionary(uniqueKeysWithValues: nodes.map { ($0.key, $0) })
        // An arrow past a column would cross that column's nodes: it runs below them instead, along the
        // gap under the lower of its two ends.
        var dipped = false
        let paths = edges.compactMap { edge -> HTML? in
            guard let from = byKey[edge.from], let to = byKey[edge.to] else { return nil }
            let (x1, y1) = (x(from) + nodeWidth, y(from) + nodeHeight / 2)
            let (x2, y2) = (x(to), y(to) + nodeHeight / 2)
            let path: String
            if to.column - from.column > 1 {
                dipped = true
                let low = max(y1, y2) + nodeHeight / 2 + rowGap / 2, turn = columnGap / 2
                path = "M\(x1),\(y1) C\(x1 + turn),\(y1) \(x1 + turn),\(low) \(x1 + columnGap),\(low) L\(x2 - columnGap),\(low) "
                    + "C\(x2 - turn),\(low) \(x2 - turn),\(y2) \(x2),\(y2)"
            } else {
                let bend = max(30, (x2 - x1) / 2)
                path = "M\(x1),\(y1) C\(x1 + bend),\(y1) \(x2 - bend),\(y2) \(x2),\(y2)"
            }
            return """
                <path class="edge edge-\(edge.kind)" data-from="\(edge.from)" data-to="\(edge.to)" d="\(path)" marker-end="url(#lineage-arrow)"/>
                """
        }
        let width = 2 * margin + columns * nodeWidth + (columns - 1) * columnGap
        let height = 2 * margin + rows * nodeHeight + (rows - 1) * rowGap + (dipped ? rowGap : 0)
        let boxes = nodes.map { node -> HTML in
            let (left, top) = (x(node), y(node))
            let radius = node.kind == .run ? nodeHeight / 2 : 4
            let shape: HTML = """
                <title>\(node.title)</title><rect x="\(left)" y="\(top)" width="\(nodeWidth)" height="\(nodeHeight)" rx="\(radius)"/>\
                <text x="\(left + nodeWidth / 2)" y="\(top + 18)" class="label">\(node.label)</text>\
                <text x="\(left + nodeWidth / 2)" y="\(top + 35)" class="detail">\(node.detail)</text>
                """
            let classes = "node \(node.kind.rawValue)\(node.current ? " current" : "")"
            guard let href = node.href else { return "<g class=\"\(classes)\" data-node=\"\(node.key)\">\(shape)</g>" }
            return "<a href=\"\(href)\" class=\"\(classes)\" data-node=\"\(node.key)\">\(shape)</a>"
        }
        let versions = nodes.filter { $0.kind == .version }.count, runCount = nodes.filter { $0.kind == .run }.count
        return """
            <div class="lineage-wrap">
            <svg class="lineage" xmlns="http://www.w3.org/2000/svg" role="img" aria-labelledby="lineage-title" \
            width="\(width)" height="\(height)" viewBox="0 0 \(width) \(height)">
            <title id="lineage-title">Lineage of \(dataset): \(versions) version\(versions == 1 ? "" : "s"), \(runCount) run\(runCount == 1 ? "" : "s")</title>
            <defs><marker id="lineage-arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto">\
            <path d="M0,0 L10,5 L0,10 z" class="arrow"/></marker></defs>
            <g class="edges">\(paths)</g>
            <g class="nodes">\(boxes)</g>
            </svg>
            </div>
            """
    }

    static func x(_ node: Node) -> Int { margin + node.column * (nodeWidth + columnGap) }
    static func y(_ node: Node) -> Int { margin + node.row * (nodeHeight + rowGap) }

    static func build(_ graph: Lineage.Graph, dataset: String, runs: [String: Run]) -> ([Node], [Edge]) {
        var nodes: [Node] = []
        var edges: [Edge] = []
        var runKeys = Set<String>()
        func addRun(_ id: String) -> String? {
            guard let run = runs[id] else { return nil }
            let key = "r:" + id
            if runKeys.insert(key).inserted {
                let name = run.name ?? ShellQuoting.commandLine(run.command)
                nodes.append(Node(key: key, kind: .run, label: "run " + RunID.short(id), detail: clip(name, 24),
                                  title: "run \(id): \(name) (\(run.observedStatus.rawValue))", href: Href("runs", id)))
            }
            return key
        }
        // Oldest first: the order rows start from.
        for version in graph.versions.reversed() {
            nodes.append(Node(key: "v:" + version.id, kind: .version, label: clip(version.reference, 24),
                              detail: "\(formatCount(version.files)) files · \(formatBytes(version.size))",
                              title: "\(version.reference) (\(version.id))\(version.message.map { ": " + $0 } ?? "")",
                              href: Href("datasets", version.dataset, String(version.number)), current: version.dataset == dataset))
        }
        for id in graph.missing {
            nodes.append(Node(key: "m:" + id, kind: .missing, label: RunID.short(id), detail: "not in this store",
                              title: "version \(id), not in this store", href: nil))
        }
        let missing = Set(graph.missing)
        for edge in graph.edges {
            edges.append(Edge(from: (missing.contains(edge.parent) ? "m:" : "v:") + edge.parent, to: "v:" + edge.child, kind: "parent"))
        }
        for version in graph.versions.reversed() {
            if let made = version.run, let key = addRun(made) { edges.append(Edge(from: key, to: "v:" + version.id, kind: "made")) }
            for used in graph.usedBy[version.id] ?? [] {
                if let key = addRun(used) { edges.append(Edge(from: "v:" + version.id, to: key, kind: "used")) }
            }
        }
        return (nodes, edges)
    }

    /// Columns by the longest chain of arrows leading to a node (an arrow that would close a loop,
    /// a run that used the version it made, is not followed); rows in a column by the mean row of what
    /// leads to them, so arrows cross less.
    static func layOut(_ nodes: inout [Node], _ edges: [Edge]) {
        var incoming: [String: [String]] = [:]
        for edge in edges { incoming[edge.to, default: []].append(edge.from) }
        var column: [String: Int] = [:]
        var visiting = Set<String>()
        func depth(_ key: String) -> Int {
            if let known = column[key] { return known }
            visiting.insert(key)
            var deepest = 0
            for from in incoming[key] ?? [] where !visiting.contains(from) { deepest = max(deepest, depth(from) + 1) }
            visiting.remove(key)
            column[key] = deepest
            return deepest
        }
        for index in nodes.indices { nodes[index].column = depth(nodes[index].key) }
        var rowOf: [String: Int] = [:]
        let order = Dictionary(uniqueKeysWithValues: nodes.enumerated().map { ($1.key, $0) })
        for current in 0...(nodes.map(\.column).max() ?? 0) {
            let members = nodes.indices.filter { nodes[$0].column == current }
            let placed = members.sorted { a, b in
                func weight(_ index: Int) -> Double {
                    let rows = (incoming[nodes[index].key] ?? []).compactMap { rowOf[$0] }
                    return rows.isEmpty ? Double(order[nodes[index].key]!) : Double(rows.reduce(0, +)) / Double(rows.count)
                }
                return (weight(a), order[nodes[a].key]!) < (weight(b), order[nodes[b].key]!)
            }
            for (row, index) in placed.enumerated() {
                nodes[index].row = row
                rowOf[nodes[index].key] = row
            }
        }
    }

    static func clip(_ text: String, _ length: Int) -> String {
        text.count <= length ? text : String(text.prefix(length - 1)) + "…"
    }
}
