"""Log metrics, parameters and tags to the cml-run that runs this program, through the descriptor named
in $CML_LOG_FD (one JSON object per line). Only the standard library; outside cml-run every call does
nothing, so a script that uses it runs unchanged anywhere.

    import cml
    cml.log(step=3, loss=0.3, acc=0.9)
    cml.param("lr", 0.01)        # or cml.param(lr=0.01, batch=64)
    cml.tag("baseline")
    cml.artifact("model.pt", kind="model")   # also cml.image("sample.png", step=3), cml.text("note")

Artifacts are stored by the cml-log that cml-run names in $CML_LOG, before the call returns, so the file
may be deleted or overwritten right after.
"""
import json
import os
import shutil
import subprocess
import sys

__all__ = ["log", "param", "tag", "artifact", "image", "text", "enabled", "ArtifactError"]


def _open_channel():
    descriptor = os.environ.get("CML_LOG_FD")
    if not descriptor:
        return None
    try:
        # Line-buffered: each call reaches cml-run at once, so nothing is lost if the program dies.
        return os.fdopen(int(descriptor), "w", buffering=1, closefd=False)
    except (OSError, ValueError):
        return None


_channel = _open_channel()


def enabled():
    """True when running under cml-run (calls are recorded)."""
    return _channel is not None


def _send(record):
    if _channel is None:
        return
    try:
        _channel.write(json.dumps(record, separators=(",", ":")) + "\n")
    except (OSError, ValueError):
        pass  # the run's recorder is gone; the program goes on


def log(step=None, **scalars):
    """Records scalars, e.g. log(step=3, loss=0.3); without a step each key counts its own steps."""
    record = {key: float(value) for key, value in scalars.items()}
    if step is not None:
        record["step"] = int(step)
    if record:
        _send(record)


def param(key=None, value=None, **params):
    """Records parameters: param("lr", 0.01) or param(lr=0.01, batch=64)."""
    if key is not None:
        params[key] = value
    if params:
        _send({"param": params})


def tag(*names):
    """Adds tags to the run."""
    for name in names:
        _send({"tag": str(name)})


class ArtifactError(RuntimeError):
    """An artifact could not be stored (the file is missing, unreadable, not an image…)."""


def _store(arguments, stdin=None):
    if _channel is None:
        return None
    executable = os.environ.get("CML_LOG") or shutil.which("cml-log")
    if not executable:
        print("cml: warning: cml-log not found; artifact not stored", file=sys.stderr)
        return None
    done = subprocess.run([executable] + arguments, input=stdin, capture_output=True)
    if done.returncode != 0:
        message = done.stderr.decode(errors="replace").strip().removeprefix("cml-log: error: ")
        raise ArtifactError(message)
    return json.loads(done.stdout)


def _options(name=None, kind=None, step=None):
    options = []
    if name is not None:
        options += ["--name", str(name)]
    if kind is not None:
        options += ["--kind", str(kind)]
    if step is not None:
        options += ["--step", str(int(step))]
    return options


def artifact(path, name=None, kind=None, step=None):
    """Stores a file or directory with the run, e.g. artifact("model.pt", kind="model"); returns its record."""
    return _store(["artifact", os.fspath(path)] + _options(name, kind, step))


def image(path, step=None, name=None):
    """Stores an image file (PNG, JPEG, GIF, WebP or SVG) with the run."""
    return _store(["image", os.fspath(path)] + _options(name, None, step))


def text(note, step=None, name=None):
    """Stores a note with the run."""
    return _store(["text", "-"] + _options(name, None, step), stdin=str(note).encode())
