"""Params MLflow cannot hold, kept whole as artifacts.

MLflow refuses a param value longer than ``MAX_PARAM_VAL_LENGTH`` (6000 characters in
MLflow 3.17), and a param can never be changed once logged. A value over the limit (a long
subject list, say) is not cut short: the whole value goes to the run's artifact
``params/<key>.txt`` and the param says where (``"62 subjects: see artifact
params/subjects.train.txt"``). One helper for every run's params (trials and parents).
"""

from __future__ import annotations

from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH

PARAMS_DIR = "params"


def param_artifact(key: str) -> str:
    """The artifact that holds param ``key``'s whole value when it is too long for MLflow."""
    return f"{PARAMS_DIR}/{key}.txt"


def fit_params(params: dict[str, str], limit: int = MAX_PARAM_VAL_LENGTH) -> tuple[dict[str, str], dict[str, str]]:
    """``params`` as MLflow can hold them, and the artifacts (path -> text) that hold the
    values that were too long; the param of each names its artifact."""
    fitted, files = {}, {}
    for key, value in params.items():
        value = str(value)
        if len(value) <= limit:
            fitted[key] = value
            continue
        path = param_artifact(key)
        files[path] = value + "\n"
        what = f"{value.count(',') + 1} subjects" if key.startswith("subjects.") else f"{len(value)} characters"
        fitted[key] = f"{what}: see artifact {path}"
    return fitted, files
