"""Log metrics, parameters and tags to the cml-run that runs this program, through the descriptor named
in $CML_LOG_FD (one JSON object per line). Only the standard library; outside cml-run every call does
nothing, so a script that uses it runs unchanged anywhere.

    import cml
    cml.log(step=3, loss=0.3, acc=0.9)
    cml.param("lr", 0.01)        # or cml.param(lr=0.01, batch=64)
    cml.tag("baseline")
"""
import json
import os

__all__ = ["log", "param", "tag", "enabled"]


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
        _channel.write(json.dumps(record, separators=(",", ":"), allow_nan=False) + "\n")
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
