"""Protocols turn an experiment and its store into trials, and the trials' runs into the
paper's tables: one module per protocol (``ablation``, ``split``, ``loso``), each a
``Protocol`` found by name (``get``; ``names``). Per trial a name, a seed, a frame length, a
fold and the roles of the store's clips (``storage.selection.Roles``).

Everything is decided here, in the driver, from the store's subject and split columns, and
deterministically from the seed — so a trial's data is fixed by its name, and what it used
is logged with it (``samples.json``) for anyone to check:

- **ablation**: train / validation / test are whole store splits.
- **split**: the training split's subjects are shuffled by the seed; the first
  ``validation_fraction`` of them (at least one) are the validation subjects, the rest train.
- **loso**: one fold per subject. The seed orders all subjects once; fold *s* takes the
  first ``validation_fraction`` of the *other* subjects in that order as validation, the
  rest as train, and *s* alone as test. The held-out subject is never a validation subject.

Searches (``search_plans``) get train and validation only, no test set at all: the split
protocol's division once, or for LOSO each fold's own training and validation subjects (nested).
"""

from __future__ import annotations

from orchestrator.protocols.base import Protocol, ProtocolError, TrialPlan, get, names, register
from orchestrator.protocols import ablation, loso, split  # noqa: F401,E402 - each registers itself

__all__ = ["Protocol", "ProtocolError", "TrialPlan", "get", "names", "register", "plan", "search_plans"]


def plan(exp, store) -> list[TrialPlan]:
    """Every trial of ``exp`` on ``store``, in a fixed order (its protocol's ``plan``)."""
    return get(exp.protocol.kind).plan(exp, store)


def search_plans(exp, store) -> list[TrialPlan]:
    """The search's train / validation plans (its protocol's ``search_plans``)."""
    return get(exp.protocol.kind).search_plans(exp, store)
