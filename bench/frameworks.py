#!/usr/bin/env python3
"""Runs real training scripts of the deep-learning frameworks under cml-run, live, and checks what cml
recorded against what each framework logged itself: Hugging Face's Trainer (log_history), Keras (History,
CSVLogger) and PyTorch Lightning (progress_bar_metrics per epoch, CSVLogger, TensorBoardLogger).

Each scenario runs piped (stdout and stderr to files) and on a terminal (`script` gives cml-run one), with
fast steps and slow ones (`--slow` seconds per step), so that timing shows if it matters. The scripts are
Tests/CMLKitTests/Fixtures/dl/*.py; with `--fixtures DIR` the console output of each console-only scenario
and the points its framework's log expects are written there, for the parser's tests.

    python3 bench/frameworks.py --venvs /tmp/dl [--fixtures Tests/CMLKitTests/Fixtures/dl]

`--venvs DIR` makes (once) two virtual environments from PyPI there: DIR/5 with torch, lightning, keras,
transformers 5, accelerate and tensorboard, and DIR/4 with transformers 4.57 over the same packages;
`--python` and `--python-tf4` name existing ones instead.

Prints one line per scenario and 'N passed, N failed'; exits 1 when one failed.
"""
import argparse
import csv
import glob
import json
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = os.path.join(ROOT, "Tests", "CMLKitTests", "Fixtures", "dl")


def scenarios(args):
    """(name, script, python, environment, how to expect) for every framework and mode."""
    found = []
    for speed, sleep in (("fast", "0"), ("slow", str(args.slow))):
        for version, python in (("hf5", args.python), ("hf4", args.python_tf4)):
            if python:
                found.append((f"{version}-{speed}", "hf_trainer.py", python, {"STEP_SLEEP": sleep}, "hf"))
        for verbose in ("1", "2"):
            found.append((f"keras-v{verbose}-{speed}", "keras_fit.py", args.python,
                          {"STEP_SLEEP": str(float(sleep) / 3), "VERBOSE": verbose}, "keras"))
        for bar in ("tqdm", "rich"):
            found.append((f"lightning-{bar}-{speed}", "lightning_fit.py", args.python,
                          {"STEP_SLEEP": sleep, "BAR": bar}, "lightning"))
    found.append(("keras-csvlogger", "keras_fit.py", args.python, {"VERBOSE": "1", "CSV": "training.csv"}, "keras-csv"))
    for bar in ("tqdm", "rich"):
        found.append((f"lightning-{bar}-csvlogger", "lightning_fit.py", args.python, {"BAR": bar, "LOGGER": "csv"}, "lightning-csv"))
    found.append(("lightning-tqdm-tensorboard", "lightning_fit.py", args.python, {"BAR": "tqdm", "LOGGER": "tb"}, "lightning-tb"))
    return found


def expected_points(kind, truth, work, mode, env, python):
    """(key, step) -> (value, relative tolerance, times logged) that the framework's own log holds."""
    expected = {}

    def add(key, step, value, tolerance):
        # A logger may write a key twice at one step (Lightning's `epoch`, in the training and the
        # validation row): so must the series.
        times = expected[(key, step)][2] + 1 if (key, step) in expected else 1
        expected[(key, step)] = (value, tolerance, times)
    if kind == "hf":
        for entry in truth:
            for key, value in entry.items():
                if key not in ("step", "total_flos"):  # the Trainer does not print total_flos
                    add(key, entry["step"], value, 1e-3)  # printed with 4 significant digits
    elif kind == "keras":
        for key, values in truth.items():
            for epoch, value in enumerate(values):
                add(key, epoch, value, 2e-4)  # printed with 4 decimals
    elif kind == "keras-csv":
        with open(os.path.join(work, env["CSV"])) as f:
            for row in csv.DictReader(f):
                for key, value in row.items():
                    if key != "epoch":
                        add(key, int(row["epoch"]), float(value), 1e-9)
    elif kind == "lightning":
        epochs = truth if not (env.get("BAR") == "rich" and mode == "pipe") else truth[-1:]  # Rich piped draws once, at the end
        for entry in epochs:
            for key, value in entry["progress_bar"].items():
                add(key, entry["epoch"], value, 5e-3)  # printed with 3 significant digits
    elif kind == "lightning-csv":
        for path in glob.glob(os.path.join(work, "logs", "**", "metrics.csv"), recursive=True):
            with open(path) as f:
                for row in csv.DictReader(f):
                    for key, value in row.items():
                        if key != "step" and value != "":
                            add(key, int(row["step"]), float(value), 1e-6)
    elif kind == "lightning-tb":
        # Read by TensorBoard's own reader, in the Python that has it.
        reader = ("import glob, json, sys\n"
                  "from tensorboard.backend.event_processing.event_accumulator import EventAccumulator\n"
                  "for path in glob.glob(sys.argv[1] + '/logs/**/events.out.tfevents*', recursive=True):\n"
                  "    events = EventAccumulator(path); events.Reload()\n"
                  "    for tag in events.Tags()['scalars']:\n"
                  "        for e in events.Scalars(tag): print(json.dumps([tag, e.step, e.value]))\n")
        lines = subprocess.run([python, "-c", reader, work], capture_output=True, text=True, check=True).stdout
        for tag, step, value in map(json.loads, lines.splitlines()):
            add(tag, step, value, 1e-6)
    return expected


def compare(expected, points, sources, kind):
    """Problems: points missing, differing, recorded twice or not expected, and series of mixed sources."""
    problems = []
    got = {}
    times = {}
    for point in points:
        if point["key"].startswith("sys/"):
            continue
        identity = (point["key"], point["step"])
        times[identity] = times.get(identity, 0) + 1
        if times[identity] > (expected[identity][2] if identity in expected else 1):
            problems.append(f"{identity} recorded {times[identity]} times")
        got[identity] = point["value"]
    for identity, (value, tolerance, _) in sorted(expected.items(), key=lambda item: (item[0][1], item[0][0])):
        if identity not in got:
            problems.append(f"{identity} missing (expected {value:.6g})")
        else:
            recorded = got[identity]
            recorded = float(recorded) if not isinstance(recorded, str) else float(recorded)
            if not (math.isclose(recorded, value, rel_tol=tolerance, abs_tol=1e-7) or (math.isnan(recorded) and math.isnan(value))):
                problems.append(f"{identity} = {recorded:.6g}, expected {value:.6g}")
    for identity in sorted(set(got) - set(expected), key=lambda item: (item[1], item[0])):
        problems.append(f"{identity} = {got[identity]} not in the framework's log")
    wanted_source = {"keras-csv": "csv", "lightning-csv": "csv", "lightning-tb": "tensorboard"}.get(kind)
    if wanted_source:
        for key in {key for key, _ in expected}:
            if sources.get(key) != wanted_source:
                problems.append(f"{key} came from {sources.get(key)}, not {wanted_source}")
    return problems


def run(cml_run, name, script, python, env, kind, mode, fixtures):
    work = tempfile.mkdtemp(prefix=f"cml-fw-{name}-")
    environment = dict(os.environ, CML_STORE=os.path.join(work, "store"), TRUTH=os.path.join(work, "truth.json"),
                       OUTPUT_DIR=os.path.join(work, "out"), PYTHONWARNINGS="ignore", **env)
    command = [cml_run, "--name", name, "--", python, os.path.join(SCRIPTS, script)]
    if mode == "pipe":
        with open(os.path.join(work, "stdout"), "wb") as out, open(os.path.join(work, "stderr"), "wb") as err:
            status = subprocess.run(command, cwd=work, env=environment, stdout=out, stderr=err).returncode
    else:
        inner = "stty cols 100 rows 40; exec " + " ".join(shlex.quote(part) for part in command)
        with open(os.path.join(work, "tty"), "wb") as out:
            status = subprocess.run(["script", "-qec", inner, "/dev/null"], cwd=work, env=environment,
                                    stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL).returncode
    if status != 0:
        return [f"exited {status}; see {work}"]

    def cml(*arguments):
        return subprocess.run([cml_run, *arguments], env=environment, capture_output=True, text=True, check=True).stdout

    record = json.loads(cml("show", cml("ls", "--limit", "1", "--format", "jsonl").split('"id":"')[1].split('"')[0]))
    points = [json.loads(line) for line in cml("metrics", record["id"]).splitlines()]
    sources = {key: summary.get("source") for key, summary in record["metrics"].items()}
    with open(environment["TRUTH"]) as f:
        truth = json.load(f)
    expected = expected_points(kind, truth, work, mode, env, python)
    problems = compare(expected, points, sources, kind)
    if fixtures and kind in ("hf", "keras", "lightning"):
        stem = os.path.join(fixtures, f"{name}-{mode}")
        for stream in ("stdout", "stderr", "tty"):
            if os.path.exists(os.path.join(work, stream)):
                shutil.copyfile(os.path.join(work, stream), f"{stem}.{stream}")
        with open(f"{stem}.expected.jsonl", "w") as f:
            for (key, step), (value, tolerance, _) in sorted(expected.items(), key=lambda item: (item[0][1], item[0][0])):
                f.write(json.dumps({"key": key, "step": step, "value": value, "tolerance": tolerance}) + "\n")
    if not problems:
        shutil.rmtree(work, ignore_errors=True)
    else:
        problems.append(f"(kept {work})")
    return problems


def make_venvs(folder):
    """DIR/5 (transformers 5 and the rest) and DIR/4 (transformers 4.57 over DIR/5's packages)."""
    latest, older = os.path.join(folder, "5"), os.path.join(folder, "4")
    if not os.path.exists(os.path.join(latest, "bin", "python")):
        subprocess.run([sys.executable, "-m", "venv", latest], check=True)
        subprocess.run([os.path.join(latest, "bin", "pip"), "install", "--quiet", "torch", "lightning", "keras",
                        "transformers>=5", "accelerate", "tensorboard", "rich"], check=True)
    if not os.path.exists(os.path.join(older, "bin", "python")):
        subprocess.run([sys.executable, "-m", "venv", older], check=True)
        site = subprocess.run([os.path.join(latest, "bin", "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              capture_output=True, text=True, check=True).stdout.strip()
        own = subprocess.run([os.path.join(older, "bin", "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
        # After its own packages: transformers 4 and what it pins shadow DIR/5's.
        with open(os.path.join(own, "zz-latest.pth"), "w") as f:
            f.write(site + "\n")
        subprocess.run([os.path.join(older, "bin", "pip"), "install", "--quiet", "transformers>=4.57,<4.58", "datasets<4"], check=True)
    return os.path.join(latest, "bin", "python"), os.path.join(older, "bin", "python")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cml-run", default=shutil.which("cml-run") or os.path.join(ROOT, ".build", "release", "cml-run"))
    parser.add_argument("--venvs", help="make (once) and use virtual environments from PyPI in this folder")
    parser.add_argument("--python", help="a Python with torch, lightning, keras, transformers 5, tensorboard")
    parser.add_argument("--python-tf4", help="the same with transformers 4.x")
    parser.add_argument("--slow", type=float, default=0.3, help="seconds per step in the slow scenarios")
    parser.add_argument("--only", default="", help="a regular expression: run the scenarios whose name matches")
    parser.add_argument("--modes", default="pipe,tty")
    parser.add_argument("--fixtures", help="write console outputs and expected points into this folder")
    args = parser.parse_args()
    if args.venvs:
        args.python, args.python_tf4 = make_venvs(os.path.abspath(args.venvs))
    if not args.python:
        parser.error("name --venvs or --python")
    passed = failed = 0
    for name, script, python, env, kind in scenarios(args):
        for mode in args.modes.split(","):
            if not re.search(args.only, f"{name}-{mode}"):
                continue
            problems = run(os.path.abspath(args.cml_run), name, script, python, env, kind, mode, args.fixtures)
            if problems:
                failed += 1
                print(f"FAIL {name} {mode}: " + "; ".join(problems[:8]) + (f" … {len(problems) - 8} more" if len(problems) > 8 else ""), flush=True)
            else:
                passed += 1
                print(f"ok   {name} {mode}", flush=True)
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
