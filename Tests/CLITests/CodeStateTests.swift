import Foundation
import Testing

/// The patch printed by `cml-run show --patch`, applied to a clean clone, gives back the work tree.
struct CodeStateTests {
    @Test func patchFromShowAppliesToACleanClone() throws {
        let box = try Sandbox()
        let repo = box.work + "/repo"
        try FileManager.default.createDirectory(atPath: repo, withIntermediateDirectories: true)
        #expect(try shell("git init -q -b main && git config core.autocrlf false && printf 'a\\nb\\n' > train.py && printf 'x' > old.txt && echo '*.log' > .gitignore && git add -A && git commit -qm init", cwd: repo).status == 0)
        // Staged and unstaged edits, a rename, a mode change, an untracked binary, an ignored file.
        let setup = """
            printf 'a\\nB\\n' > train.py && git add train.py && printf 'a\\nB\\nc\\n' > train.py && \
            git mv old.txt new.txt && chmod +x train.py && mkdir -p data && head -c 3000 /dev/urandom > data/blob.bin && \
            echo noise > run.log
            """
        #expect(try shell(setup, cwd: repo).status == 0)
        let result = try box.run("cml-run", ["--", "true"], cwd: repo)
        #expect(result.status == 0, "\(result.stderr)")
        let run = try #require(try box.runs().first)
        let id = try #require(run["id"] as? String)
        let code = try #require(try box.show(id)["code"] as? [String: Any])
        #expect(code["in_repository"] as? Bool == true)
        #expect(code["branch"] as? String == "main")
        #expect(code["dirty"] as? Bool == true)
        #expect(code["pushed"] as? Bool == false)
        let commit = try #require(code["commit"] as? String)
        let patch = try box.run("cml-run", ["show", "--patch", id])
        #expect(patch.status == 0 && !patch.stdout.isEmpty)
        try patch.stdout.write(to: URL(fileURLWithPath: box.root + "/changes.patch"))
        let clone = box.root + "/clone"
        #expect(try shell("git clone -q \(repo) \(clone) && cd \(clone) && git checkout -q \(commit) && git apply \(box.root)/changes.patch", cwd: box.root).status == 0)
        let compare = try shell("diff -r --exclude=.git --exclude=run.log \(repo) \(clone) && test -x \(clone)/train.py && test ! -e \(clone)/old.txt", cwd: box.root)
        #expect(compare.status == 0, "\(compare.out)\(compare.stderr)")
    }

    @Test func outsideARepositoryIsRecordedAsSuch() throws {
        let box = try Sandbox()
        #expect(try box.run("cml-run", ["--", "true"]).status == 0)
        let id = try #require(try box.runs().first?["id"] as? String)
        let code = try #require(try box.show(id)["code"] as? [String: Any])
        #expect(code["in_repository"] as? Bool == false)
        #expect(try box.run("cml-run", ["show", "--patch", id]).stdout.isEmpty)
    }

    @Test func aStoreInsideTheWorkTreeIsNotPartOfTheCode() throws {
        let box = try Sandbox()
        #expect(try shell("git init -q -b main && printf 'x\\n' > train.py && git add -A && git commit -qm init", cwd: box.work).status == 0)
        let store = box.work + "/.cml"
        for _ in 0..<3 {
            let result = try box.run("cml-run", ["--store", store, "--monitor-interval", "0", "--", "true"])
            #expect(result.status == 0 && result.stderr.isEmpty, "\(result.stderr)")
        }
        let records = try box.run("cml-run", ["ls", "--store", store]).jsonLines
        for record in records {
            let shown = try box.run("cml-run", ["show", "--store", store, try #require(record["id"] as? String)]).jsonLines.first
            let code = try #require(shown?["code"] as? [String: Any])
            #expect(code["dirty"] as? Bool == false && code["patch_blob"] == nil, "\(code)")
        }
        // Outside the store, an untracked file still counts.
        try box.write("notes.txt", "kept\n")
        #expect(try box.run("cml-run", ["--store", store, "--monitor-interval", "0", "--", "true"]).status == 0)
        let latest = try #require(try box.run("cml-run", ["ls", "--store", store, "--limit", "1"]).jsonLines.first?["id"] as? String)
        let patch = try box.run("cml-run", ["show", "--store", store, "--patch", latest]).out
        #expect(patch.contains("notes.txt") && !patch.contains(".cml/"), "\(patch)")
    }
}
