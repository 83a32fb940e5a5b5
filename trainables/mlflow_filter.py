"""Values inside MLflow filter strings, quoted so that no id or name can change the query.

MLflow's search grammar takes a string value in single or double quotes and strips the two
ends; it has no escape character (``'it\\'s'`` and ``'it''s'`` both match nothing). So a
value with a single quote in it is written in double quotes, one with a double quote in
single quotes, and a value with both cannot be written exactly: it is refused with a clear
error rather than silently matching other runs (or none).
"""

from __future__ import annotations


def mlflow_quote(value: str) -> str:
    """``value`` as a string literal of an MLflow ``filter_string``."""
    value = str(value)
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    raise ValueError(f"{value!r}: holds both ' and \", which an MLflow filter string cannot quote "
                     f"(its grammar has no escape character); rename it (a subject id, a split or an "
                     f"experiment name) to use one kind of quote at most")
