"""Prints an Optuna study as Optuna's own API reads it, as one JSON object: its direction, its best
trial's number, and each trial's number, state, value and params.

Usage: python3 read_study.py STORAGE_URL STUDY_NAME (with the python of the environment optuna is in)
"""
import json
import sys

import optuna

optuna.logging.set_verbosity(optuna.logging.WARNING)
study = optuna.load_study(study_name=sys.argv[2], storage=sys.argv[1])
complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
print(json.dumps({
    "direction": study.direction.name,
    "best": study.best_trial.number if complete else None,
    "trials": [{"number": t.number, "state": t.state.name, "value": t.value, "params": t.params} for t in study.trials],
}))
