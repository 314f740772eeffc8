/// Checks that what a run recorded can be read back as stored (`cml-run verify`, and the web UI): its
/// console log, its code patch, and every artifact, whose blobs are read through and hashed.
public enum RunVerification {
    /// One thing of a run that is not as stored.
    public struct Problem: Sendable, Equatable {
        /// `log`, `patch` or `artifact`.
        public var part: String
        /// The artifact's name and version (`model.pt v2`), or for a file of a directory artifact, its path in it.
        public var name: String?
        /// The blob, for a patch or an artifact.
        public var sha256: String?
        /// `missing` or `damaged`.
        public var problem: String
        public var detail: String

        public var json: JSON {
            var members: [(String, JSON)] = [("part", .string(part))]
            if let name { members.append(("name", .string(name))) }
            if let sha256 { members.append(("sha256", .string(sha256))) }
            members += [("problem", .string(problem)), ("detail", .string(detail))]
            return .object(members)
        }

        /// `artifact model.pt v2: missing (…)`, for a terminal.
        public var summary: String {
            "\(part)\(name.map { " \($0)" } ?? ""): \(problem) (\(detail))"
        }
    }

    public struct Report: Sendable {
        public var id: String
        public var problems: [Problem]
        public var ok: Bool { problems.isEmpty }

        public var json: JSON {
            .object([("id", .string(id)), ("ok", .bool(ok)), ("problems", .array(problems.map(\.json)))])
        }
    }

    /// A blob to read back, and what it is to the run.
    private struct Expected: Sendable {
        var blob: String
        var part: String
        var name: String?
    }

    /// Reads back everything `run` recorded; blobs are hashed on `jobs` threads.
    public static func verify(_ run: Run, in store: any Store, jobs: Int) throws(CMLError) -> Report {
        var problems = logProblems(run, in: store)
        var expected: [Expected] = []
        if let patch = run.code["patch_blob"]?.stringValue { expected.append(Expected(blob: patch, part: "patch")) }
        for artifact in try store.artifacts(run: run.id) {
            let name = "\(artifact.name) v\(artifact.version)"
            guard artifact.isDirectory else {
                expected.append(Expected(blob: artifact.sha256, part: "artifact", name: name))
                continue
            }
            // The manifest is read first: the blobs of the directory's files are known only from it.
            do throws(CMLError) {
                var bytes: [UInt8] = []
                try store.readBlob(artifact.sha256) { chunk throws(CMLError) in bytes.append(contentsOf: chunk) }
                for entry in try Manifest(decoding: bytes).entries {
                    if let blob = entry.sha256 { expected.append(Expected(blob: blob, part: "artifact", name: "\(name)/\(entry.path)")) }
                }
            } catch {
                problems.append(Problem(part: "artifact", name: "\(name) (its manifest)", sha256: artifact.sha256,
                                        problem: store.hasBlob(artifact.sha256) ? "damaged" : "missing", detail: error.message))
            }
        }
        let checks = expected
        problems += ParallelWork.map(count: checks.count, workers: jobs) { _, item -> Problem? in
            let check = checks[item]
            do throws(CMLError) { _ = try store.blobSize(check.blob) } catch {
                return Problem(part: check.part, name: check.name, sha256: check.blob, problem: "missing", detail: error.message)
            }
            do throws(CMLError) {
                try store.readBlob(check.blob) { _ throws(CMLError) in }
                return nil
            } catch {
                return Problem(part: check.part, name: check.name, sha256: check.blob, problem: "damaged", detail: error.message)
            }
        }.compactMap { $0 }
        return Report(id: run.id, problems: problems)
    }

    /// Reads the run's console log through to its end.
    private static func logProblems(_ run: Run, in store: any Store) -> [Problem] {
        let reader = RunLogReader(store: store, run: run.id)
        while reader.next() != nil {}
        return reader.problems(of: run).map { Problem(part: "log", problem: $0.kind, detail: "console log: \($0)") }
    }
}
