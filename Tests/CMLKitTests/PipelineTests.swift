import Testing
@testable import CMLKit
import CMLPipelineFile

struct PipelineDefinitionTests {
    static let file = """
        name: demo
        queue: cpu
        steps:
          prepare:
            command: python prepare.py --rows ${params.rows}
            params: {rows: 1000}
          train:
            command: [python, train.py, --lr, "${params.lr}", --rows, "${prepare.params.rows}"]
            params: {lr: 0.1}
            inputs: {data: prepare.rows, labels: "labels@3"}
            env: {SEED: "7"}
            retries: 2
            timeout: 30m
            queue: gpu
          report:
            base: 0192f3a4
            set: {verbose: 1}
            needs: [train]
        """

    @Test func aFileReadsIntoStepsWithTheirDependencies() throws {
        let definition = try PipelineFile.parse(Self.file, file: "p.yaml", defaultName: "p")
        #expect(definition.name == "demo" && definition.queue == "cpu")
        #expect(definition.steps.map(\.name) == ["prepare", "train", "report"])
        let train = try #require(definition.step("train"))
        #expect(train.command == ["python", "train.py", "--lr", "${params.lr}", "--rows", "${prepare.params.rows}"])
        #expect(definition.step("prepare")?.command == ["sh", "-c", "python prepare.py --rows ${params.rows}"])
        #expect(train.inputs == [PipelineInput(name: "data", source: .stepOutput(step: "prepare", output: "rows")),
                                 PipelineInput(name: "labels", source: .dataset("labels@3"))])
        #expect(train.retries == 2 && train.timeout == 1800 && train.queue == "gpu")
        #expect(train.environment == [PipelineSetting(key: "SEED", value: "7")])
        #expect(definition.dependencies(of: train) == ["prepare"])
        #expect(definition.step("report")?.base == "0192f3a4" && definition.step("report")?.settings == [PipelineSetting(key: "verbose", value: "1")])
        #expect(try definition.order() == ["prepare", "train", "report"])
    }

    @Test func overridesSetAParameterOrABaseRunsSetting() throws {
        var definition = try PipelineFile.parse(Self.file, file: "p.yaml", defaultName: "p")
        try definition.apply([try PipelineOverride(parsing: "train.lr=0.5"), try PipelineOverride(parsing: "report.depth=3")])
        #expect(definition.step("train")?.params == [PipelineSetting(key: "lr", value: "0.5")])
        #expect(definition.step("report")?.settings.last == PipelineSetting(key: "depth", value: "3"))
        #expect(throws: CMLError.self) { try definition.apply([try PipelineOverride(parsing: "train.momentum=1")]) }
        #expect(throws: CMLError.self) { try PipelineOverride(parsing: "lr=1") }
    }

    @Test func templatesReplaceOnlyTheirOwnReferences() throws {
        let text = "run ${params.lr} after ${prepare.params.rows} in ${HOME} and ${x.y}"
        #expect(try PipelineTemplate.references(in: text) == [.own("lr"), .step("prepare", "rows")])
        let filled = try PipelineTemplate.substitute(text) { reference in
            switch reference {
            case .own(let key): "<\(key)>"
            case .step(let step, let key): "<\(step):\(key)>"
            }
        }
        #expect(filled == "run <lr> after <prepare:rows> in ${HOME} and ${x.y}")
        #expect(try PipelineTemplate.substitute("unclosed ${params.lr") { _ in "x" } == "unclosed ${params.lr")
    }

    @Test func cyclesAndUnknownNamesAreRefused() throws {
        func refusal(_ yaml: String) -> String {
            do {
                _ = try PipelineFile.parse(yaml, file: "p.yaml", defaultName: "p")
                return ""
            } catch {
                return error.message
            }
        }
        #expect(refusal("steps:\n  a:\n    command: x ${b.params.k}\n  b:\n    command: y\n    inputs: {i: a.out}\n").contains("cycle"))
        #expect(refusal("steps:\n  a:\n    command: x\n    needs: [a]\n").contains("cycle"))
        #expect(refusal("steps:\n  a:\n    command: x ${a.params.k}\n    params: {k: 1}\n").contains("refers to the step itself"))
        #expect(refusal("steps:\n  a:\n    command: x\n    inputs: {d: 'no version'}\n").contains("p.yaml:4"))
        #expect(refusal("steps:\n  a:\n    command: x\n    inputs: {d-1: data@1, d_1: data@2}\n").contains("both set CML_INPUT_D_1"))
        #expect(refusal("steps:\n  a:\n    command: x\n    timeout: soon\n").contains("timeout must be seconds"))
        #expect(refusal("name: a.b\nsteps:\n  a:\n    command: x\n").contains("p.yaml:1: name"))
        #expect(refusal("steps: {}\n").contains("has no steps"))
        #expect(refusal("steps:\n  a:\n    command: []\n").contains("command is empty"))
    }

    @Test func theKeyChangesWithWhatDecidesTheResultAndNothingElse() throws {
        var spec = RunSpec(repository: "/repo", commit: String(repeating: "a", count: 40), patchBlob: nil, command: ["python", "train.py"])
        spec.params = [Param(key: "lr", value: .double(0.1), source: "option")]
        let inputs = [(name: "data", content: String(repeating: "1", count: 64))]
        let key = PipelineController.key(of: spec, inputs: inputs)
        var elsewhere = spec
        elsewhere.repository = "https://example.com/repo.git"
        elsewhere.name = "another name"
        elsewhere.project = "other"
        #expect(PipelineController.key(of: elsewhere, inputs: inputs) == key)
        var changed = spec
        changed.params[0].value = .double(0.2)
        #expect(PipelineController.key(of: changed, inputs: inputs) != key)
        changed = spec
        changed.commit = String(repeating: "b", count: 40)
        #expect(PipelineController.key(of: changed, inputs: inputs) != key)
        changed = spec
        changed.environment = [EnvironmentVariable(name: "SEED", value: "1")]
        #expect(PipelineController.key(of: changed, inputs: inputs) != key)
        #expect(PipelineController.key(of: spec, inputs: [(name: "data", content: String(repeating: "2", count: 64))]) != key)
    }

    @Test func aPipelinesRecordReadsBack() throws {
        let definition = try PipelineFile.parse(Self.file, file: "p.yaml", defaultName: "p")
        var pipeline = Pipeline(id: RunID.make(), name: "demo", project: "default", file: "p.yaml", source: Self.file, overrides: ["train.lr=0.5"],
                                code: RunSpec(repository: nil, commit: nil, patchBlob: nil, command: ["true"]), queue: nil, localSlots: 2,
                                force: ["train"], forceAll: false, steps: PipelineController.stepRecords(of: definition), now: 1_700_000_000)
        pipeline.steps[0].state = .cached
        pipeline.steps[0].run = RunID.make()
        pipeline.steps[0].startedAt = 1_700_000_001
        pipeline.steps[0].endedAt = 1_700_000_003.5
        pipeline.steps[1].attempts = [RunID.make(), RunID.make()]
        pipeline.steps[1].reason = "exit status 3"
        let read = try Pipeline(record: pipeline.record)
        #expect(read.steps == pipeline.steps)
        #expect(read.localSlots == 2 && read.force == ["train"] && read.overrides == ["train.lr=0.5"] && read.source == Self.file)
        #expect(read.steps[2].after == ["train"])
        var damaged = pipeline.record
        damaged.document = "{\"name\": \"x\"}"
        #expect(throws: CMLError.self) { try Pipeline(record: damaged) }
    }
}
