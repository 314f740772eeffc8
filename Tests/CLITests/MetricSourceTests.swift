import Foundation
import Testing

/// One source per metric series: what a progress bar showed gives way to the same key from the framework's
/// own logs, whichever came first, and the run's record says where each series came from.
struct MetricSourceTests {
    func series(_ box: Sandbox, _ id: String, _ key: String) throws -> [String] {
        try box.run("cml-run", ["metrics", id, "--key", key]).jsonLines.map { "\($0["step"]!)=\($0["value"]!)" }
    }

    @Test func aCSVLoggersPointsReplaceTheBarsAndTheRecordSaysSo() throws {
        let box = try Sandbox()
        // Keras's verbose=2 lines with 4 decimals, and its CSVLogger with all of them; the first epoch's
        // row is written before the console line, the rest after it.
        try box.write("train.py", """
            import time
            log = open("training.csv", "w")
            log.write("epoch,loss,val_loss\\n")
            for epoch in range(3):
                loss, val = round(0.512345 - epoch / 10, 6), round(0.61111 - epoch / 10, 5)
                if epoch == 0:
                    log.write(f"{epoch},{loss},{val}\\n"); log.flush()
                print(f"Epoch {epoch + 1}/3", flush=True)
                print(f"10/10 - 0s - 2ms/step - loss: {loss:.4f} - val_loss: {val:.4f} - acc: 0.5", flush=True)
                time.sleep(0.3)
                if epoch > 0:
                    log.write(f"{epoch},{loss},{val}\\n"); log.flush()
            """)
        let run = try box.run("cml-run", ["--tb-interval", "0.2", "--", "python3", "train.py"])
        #expect(run.status == 0, "\(run.stderr)")
        let id = try #require(try box.runs().first?["id"] as? String)
        #expect(try series(box, id, "loss") == ["0=0.512345", "1=0.412345", "2=0.312345"])
        #expect(try series(box, id, "val_loss") == ["0=0.61111", "1=0.51111", "2=0.41111"])
        // A key only the console shows stays the console's.
        #expect(try series(box, id, "acc") == ["0=0.5", "1=0.5", "2=0.5"])
        let metrics = try #require(try box.show(id)["metrics"] as? [String: [String: Any]])
        #expect(metrics["loss"]?["source"] as? String == "csv")
        #expect(metrics["loss"]?["count"] as? Int == 3)
        #expect(metrics["acc"]?["source"] as? String == "console")
        // Turned off, the console's values stay.
        #expect(try box.run("cml-run", ["--no-csv-logs", "--", "python3", "train.py"]).status == 0)
        let second = try #require(try box.runs().first?["id"] as? String)
        #expect(try series(box, second, "loss") == ["0=0.5123", "1=0.4123", "2=0.3123"])
    }

    @Test func eventFilesOutrankTheConsoleAndTheProgramsOwnLogOutranksBoth() throws {
        let box = try TensorBoardImportTests.sandbox()
        try box.write("train.py", """
            import json, os
            from tensorboardX import SummaryWriter
            w = SummaryWriter("tb")
            for step in range(3):
                print(f"step {step}: loss={1 - step / 10:.2f} acc={step / 10:.2f}", flush=True)
                w.add_scalar("loss", 1 - step / 10 + 0.001, step)
            w.close()
            os.write(int(os.environ["CML_LOG_FD"]), b'{"step": 7, "acc": 0.75}\\n')
            """)
        let run = try box.run("cml-run", ["--", "python3", "train.py"])
        #expect(run.status == 0, "\(run.stderr)")
        let id = try #require(try box.runs().first?["id"] as? String)
        let loss = try box.run("cml-run", ["metrics", id, "--key", "loss"]).jsonLines
        #expect(loss.map { $0["step"] as? Int } == [0, 1, 2])
        #expect(loss.map { (($0["value"] as? Double ?? 0) * 1000).rounded() } == [1001, 901, 801])
        #expect(try series(box, id, "acc") == ["7=0.75"])
        let metrics = try #require(try box.show(id)["metrics"] as? [String: [String: Any]])
        #expect(metrics["loss"]?["source"] as? String == "tensorboard")
        #expect(metrics["acc"]?["source"] as? String == "log")
    }

    @Test func parseTakesTheStoreOptionAndReadsNoStore() throws {
        let box = try Sandbox()
        let result = try box.run("cml-run", ["parse", "--store", box.root + "/none"], stdin: Data("loss: 0.5\n".utf8))
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.jsonLines.map { "\($0["key"]!)=\($0["value"]!)" } == ["loss=0.5"])
        #expect(!FileManager.default.fileExists(atPath: box.root + "/none"))
    }
}
