"""What every protocol is: an object, found by name, that plans an experiment's trials on a
store (``plan``; ``search_plans`` for the search before it, where it has one) and reports
their runs (``report``: the paper's tables and figures, ``orchestrator.reports.Report``).

A new protocol is one new module in this package: a ``Protocol`` subclass with a ``name``,
decorated with ``@register``, imported by ``orchestrator/protocols/__init__.py`` (and its
name added to ``experiment.PROTOCOLS``, the config's validation)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from storage.selection import Roles

if TYPE_CHECKING:  # the reports import nothing of the protocols; the type is for readers
    from orchestrator.experiment import Experiment
    from orchestrator.reports.context import ReportContext
    from orchestrator.reports.report import Report
    from orchestrator.reports.runs import TrialResult
    from storage.store import FrameStore


@dataclass(frozen=True)
class TrialPlan:
    name: str
    seed: int
    length: str
    fold: str  # the held-out subject (loso); "" otherwise
    roles: Roles
    trial: dict | None = None  # this trial's own config (a nested search's choice per fold); None: the experiment's

    def to_dict(self) -> dict:
        out = {"name": self.name, "seed": self.seed, "length": self.length, "fold": self.fold,
               "roles": self.roles.to_dict()}
        if self.trial is not None:
            out["trial"] = self.trial
        return out


class ProtocolError(ValueError):
    """The store cannot serve the protocol (a split missing, too few subjects, ...)."""


class Protocol:
    """One evaluation protocol. Subclasses set ``name`` and implement ``plan`` and ``report``."""

    name: str = ""

    def plan(self, exp: "Experiment", store: "FrameStore") -> list[TrialPlan]:
        """Every trial of ``exp`` on ``store``, in a fixed order."""
        raise NotImplementedError

    def search_plans(self, exp: "Experiment", store: "FrameStore") -> list[TrialPlan]:
        """What the configurations of a search train and are validated on (no test set)."""
        raise ProtocolError(f"search: protocol {self.name!r} has no search; use 'split' or 'loso'")

    def names_without_store(self, exp: "Experiment") -> list[str] | None:
        """The trial names when the store is not built yet (a dry run), if they do not depend
        on its subjects; None when they do."""
        return None

    def count_text(self, exp: "Experiment", plans: list[TrialPlan] | None, n_trials: int) -> str:
        """How the dry run says the number of trials."""
        return f"{n_trials} trials = {len(exp.seeds)} seeds x {len(exp.lengths)} lengths ({', '.join(exp.lengths)})"

    def report(self, results: "list[TrialResult]", context: "ReportContext") -> "Report":
        """The protocol's tables and figures from its finished runs."""
        raise NotImplementedError


_REGISTRY: dict[str, Protocol] = {}


def register(cls: type[Protocol]) -> type[Protocol]:
    """Class decorator: makes the protocol findable by its ``name``."""
    if not cls.name or cls.name in _REGISTRY:
        raise ValueError(f"protocol {cls.__name__}: name {cls.name!r} is empty or taken")
    _REGISTRY[cls.name] = cls()
    return cls


def get(name: str) -> Protocol:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ProtocolError(f"protocol {name!r}: not one of {names()}") from None


def names() -> list[str]:
    return sorted(_REGISTRY)
