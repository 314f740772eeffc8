/// Copies dataset versions from one store to another, as they are (id, number, parents, message,
/// times), with their manifests and blobs: it asks the other side for each version by id, and records a
/// version there by asking it to (`copyDatasetVersion`), which names the blobs it lacks (the manifest
/// first, then the files'); only those are sent. Parents go before the versions that name them, so a
/// lineage arrives whole, as far as the source holds it. A second copy sends nothing. The engine of
/// `cml-serve push`/`pull` for datasets, and of `RunSync` for the versions a run used or made.
public struct DatasetSync: Sendable {
    public let source: any Store
    public let target: any Store

    public init(from source: any Store, to target: any Store) {
        self.source = source
        self.target = target
    }

    /// What copying one version sent.
    public struct Copy: Sendable, Equatable {
        public var version: DatasetVersion
        /// The version was new to the target.
        public var created = false
        public var blobs = 0
        public var blobBytes: Int64 = 0

        public var json: JSON {
            .object([("id", .string(version.id)), ("dataset", .string(version.dataset)), ("version", .int(version.number)),
                     ("created", .bool(created)), ("blobs", .int(Int64(blobs))), ("blob_bytes", .int(blobBytes))])
        }
    }

    /// Copies version `id` and, before it, each ancestor the target lacks; returns what was sent for each
    /// version copied, oldest first, and for `id` in any case (last). A parent the source does not hold
    /// (removed there) is left out, as the source's lineage shows it. A version whose id the target holds
    /// as another version, or whose number another version of its dataset has there, is refused
    /// (`conflict`), never overwritten; its ancestors copied before it stay.
    public func copyVersion(_ id: String) throws(CMLError) -> [Copy] {
        guard let asked = try source.datasetVersion(id: id) else {
            throw CMLError("\(source.location) has no dataset version with id \(id)", kind: .notFound)
        }
        // Depth first, each version after its parents; a version the target holds ends the walk there.
        var order: [DatasetVersion] = []
        var seen = Set<String>()
        var stack: [(version: DatasetVersion, parentsDone: Bool)] = [(asked, false)]
        var present: DatasetVersion?
        while let (version, parentsDone) = stack.popLast() {
            if parentsDone {
                order.append(version)
                continue
            }
            guard seen.insert(version.id).inserted else { continue }
            if let there = try target.datasetVersion(id: version.id) {
                try Self.requireSame(version, there, target: target.location)
                if version.id == id { present = there }
                continue
            }
            stack.append((version, true))
            for parent in version.parents.reversed() where !seen.contains(parent) {
                if let found = try source.datasetVersion(id: parent) { stack.append((found, false)) }
            }
        }
        var copies: [Copy] = []
        for version in order { copies.append(try record(version)) }
        if let present { copies.append(Copy(version: present)) }
        return copies
    }

    /// Records `version` in the target, sending the blobs it says it lacks.
    private func record(_ version: DatasetVersion) throws(CMLError) -> Copy {
        var copy = Copy(version: version)
        var sent = (blobs: 0, bytes: Int64(0))
        do {
            let recorded = try sendingMissingBlobs(sent: &sent) { _ throws(CMLError) in try target.copyDatasetVersion(version) }
            copy.created = if case .created = recorded { true } else { false }
            (copy.blobs, copy.blobBytes) = sent
        } catch where error.kind == .conflict {
            throw CMLError("cannot copy \(version.reference) (\(version.id)) to \(target.location): \(error.message)",
                           hint: "nothing of it was copied; cml-data export and import would give it the next free number there",
                           kind: .conflict)
        }
        return copy
    }

    /// Asks the target to record a version (`attempt`, given the blobs and bytes sent so far, which
    /// `sent` adds to) until it is no longer missing blobs, sending from the source those it names: its
    /// manifest, then its files, then any that a concurrent `gc` on the target freed meanwhile.
    /// `lackingHere`: stores again blobs the source lacks too (freed there meanwhile); without it, such
    /// blobs fail the copy.
    public func sendingMissingBlobs(sent: inout (blobs: Int, bytes: Int64),
                                    lackingHere: ((Set<String>) throws(CMLError) -> Void)? = nil,
                                    _ attempt: (_ sent: (blobs: Int, bytes: Int64)) throws(CMLError) -> DatasetVersionCommit)
        throws(CMLError) -> DatasetVersionCommit {
        for _ in 0..<4 {
            let answer = try attempt(sent)
            guard case .missingBlobs(let missing) = answer else { return answer }
            let lacking = missing.filter { !source.hasBlob($0) }
            if !lacking.isEmpty {
                guard let lackingHere else {
                    throw CMLError("\(source.location) lacks \(lacking.count) blob\(lacking.count == 1 ? "" : "s") of the version, "
                                   + "such as \(lacking.first!)", hint: "cml-data verify names what is missing", kind: .damaged)
                }
                try lackingHere(lacking)
            }
            let batch = try RunSync(from: source, to: target).sendBlobs(missing.sorted())
            sent.blobs += batch.blobs
            sent.bytes += batch.bytes
        }
        throw CMLError("the blobs of the version keep disappearing from \(target.location) (a concurrent cml-data gc or rm there?)",
                       hint: "try again", kind: .busy)
    }

    /// The same id on both sides names the same version only when its dataset and manifest agree.
    static func requireSame(_ version: DatasetVersion, _ there: DatasetVersion, target: String) throws(CMLError) {
        guard version.dataset == there.dataset, version.manifest == there.manifest else {
            throw CMLError("dataset version \(version.id) is another version in \(target): here \(version.reference) of manifest "
                           + "\(version.manifest.prefix(12)), there \(there.reference) of manifest \(there.manifest.prefix(12))",
                           hint: "nothing of it was copied", kind: .conflict)
        }
    }
}
