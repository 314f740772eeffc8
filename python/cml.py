"""Log metrics, parameters and tags to the cml-run that runs this program, through the descriptor named
in $CML_LOG_FD (one JSON object per line). Only the standard library; outside cml-run every call checks
its arguments the same way and records nothing, so a script that uses it runs unchanged anywhere.

    import cml
    cml.log({"train/loss": 0.3, "acc": 0.9}, step=3)   # or cml.log(step=3, loss=0.3), or both mixed
    cml.param(lr=0.01, batch=64)  # or cml.param("lr", 0.01), or cml.param({"lr": 0.01})
    cml.tag("baseline")
    cml.artifact("model.pt", kind="model")   # also cml.image("sample.png", step=3), cml.text("note")

A step is an integer >= 0 (2.0 and numpy or torch integers count; 2.7, "3" and True raise ValueError),
given as step= or as a "step" key of the dict; without one each key counts its own steps. A value is anything float() takes, numpy and torch scalars
included (else TypeError); NaN and infinities are kept.

For code that passes a logger around, Logger(prefix="train/") has the methods other trackers' loggers
have: log(metrics, step=None), log_metrics(metrics, step=None) (Lightning, MLflow), log_params(params)
and log_hyperparams(params), tag(*names), and ClearML's report_scalar(title, series, value, iteration),
which records the key "title/series". The prefix goes before metric keys, not parameters.

Artifacts are stored by the cml-log that cml-run names in $CML_LOG, before the call returns, so the file
may be deleted or overwritten right after.
"""
import json
import math
import operator
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping

__all__ = ["log", "param", "tag", "artifact", "image", "text", "enabled", "Logger", "ArtifactError"]

# The reader takes "step" as the step only below this (where a double holds every integer).
_STEP_LIMIT = 9 * 10**15
# The reader refuses a line with an empty metric name or one holding a control character.
_BAD_NAME = re.compile(r"^$|[\x00-\x1f\x7f]")


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


def _plain(value):
    """A parameter value json cannot write: a numpy or torch scalar as its number, anything else as str()."""
    try:
        return value.item()
    except (AttributeError, TypeError, ValueError, RuntimeError):
        return str(value)


def _send(record):
    if _channel is None or not record:
        return
    try:
        _channel.write(json.dumps(record, separators=(",", ":"), default=_plain) + "\n")
    except (OSError, ValueError):
        pass  # the run's recorder is gone; the program goes on


def _step(step):
    """The step as an int >= 0: from an int, or a float, numpy or torch scalar with an integral value."""
    refused = ValueError(f"cml: a step must be an integer >= 0 (below 9e15), not {step!r:.80}")
    # bool is an int, and numpy's and torch's booleans convert to numbers: none is a step.
    if isinstance(step, (str, bytes)) or "bool" in str(getattr(step, "dtype", type(step).__name__)):
        raise refused
    try:
        number = operator.index(step)
    except TypeError:
        try:
            number = float(step)
        except (TypeError, ValueError):
            raise refused from None
        if not number.is_integer():
            raise refused
        number = int(number)
    if not 0 <= number < _STEP_LIMIT:
        raise refused
    return number


def _merged(mapping, keywords):
    """A dict given first and keywords, together; a key given both ways is an error."""
    if mapping is None:
        return keywords
    twice = mapping.keys() & keywords.keys()
    if twice:
        raise TypeError(f"cml: {min(twice)!r} is given twice")
    return {**mapping, **keywords}


def _record(metrics, step, scalars, prefix=""):
    """The JSON object of one log() call, checked: its step, then each value under prefix + key."""
    if metrics is not None and not isinstance(metrics, Mapping):
        raise TypeError(f"cml: metrics come as a dict or as keywords, not {metrics!r:.80} "
                        "(a step goes as step=...)")
    metrics = _merged(metrics, scalars)
    if "step" in metrics:
        if step is not None:
            raise TypeError("cml: 'step' is given twice")
        step = metrics.pop("step")
    record = {} if step is None else {"step": _step(step)}
    for key, value in metrics.items():
        if not isinstance(key, str):
            raise TypeError(f"cml: a metric name must be a string, not {key!r}")
        name = prefix + key
        if _BAD_NAME.search(name):
            raise ValueError(f"cml: {name!r} is not a metric name (empty, or holds a control character)")
        try:
            number = float(value)
        except (TypeError, ValueError, OverflowError):
            raise TypeError(f"cml: the value of {name!r} is not a number: {value!r:.80}") from None
        # JSON has no NaN or infinity; the reader takes "nan", "inf" and "-inf".
        record[name] = number if math.isfinite(number) else str(number)
    return record


def log(metrics=None, /, step=None, **scalars):
    """Records scalars at a step: log({"loss": 0.3}, step=3), log(step=3, loss=0.3), or both mixed.

    A "step" key in the dict is the step. Without a step each key counts its own steps."""
    _send(_record(metrics, step, scalars))


def param(key=None, value=None, **params):
    """Records parameters: param("lr", 0.01), param(lr=0.01, batch=64) or param({"lr": 0.01})."""
    if key is not None and not isinstance(key, Mapping):
        key = {key: value}
    params = _merged(key, params)
    if params:
        _send({"param": params})


def tag(*names):
    """Adds tags to the run."""
    for name in names:
        _send({"tag": str(name)})


class Logger:
    """A logger for code that passes one around; prefix (e.g. "train/") goes before each metric key."""

    def __init__(self, prefix=""):
        self.prefix = prefix

    def log(self, metrics=None, /, step=None, **scalars):
        """As cml.log, under the prefix."""
        _send(_record(metrics, step, scalars, self.prefix))

    def log_metrics(self, metrics, step=None):
        """Records a dict of scalars (Lightning's and MLflow's name)."""
        self.log(metrics, step=step)

    def log_params(self, params):
        """Records a dict of parameters (not prefixed)."""
        param(params)

    log_hyperparams = log_params

    def tag(self, *names):
        """Adds tags to the run."""
        tag(*names)

    def report_scalar(self, title, series, value, iteration):
        """Records value under "title/series" at step iteration (ClearML's Logger)."""
        self.log({f"{title}/{series}": value}, step=iteration)


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
        options += ["--step", str(_step(step))]
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
