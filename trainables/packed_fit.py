"""The epoch loop of a pack: K seeds of one configuration trained at once as a
``PackedModel``, each member exactly as it trains alone (a solo trial is a pack of one).

What is per member, as in its solo trial: initialisation (the solo model built from its
seed), data order (``(seed, epoch)``), its own train and validation data (the split
protocol draws them per seed), class weights, the loss (a mean over its own batch), the
gradient-norm clipping, Adam's moments *and step count* (``PackedAdam``: a member whose
epoch has fewer batches than another's skips the steps it has no batch for), and the
best-validation epoch with its parameters. State goes in and out as one solo ``FitState``
per member, so a member's checkpoint is its solo trial's.

A member's arithmetic is its own. On CPU each member runs forward and backward alone on its
own batch (cut to its longest clip, as a solo trial cuts it), then clips and steps Adam on
its own slices, with the ops of ``torch.optim.Adam(foreach=True)``. Nothing it computes
sums over, pads to or is shaped by another member. A solo trial trains as a pack of one
(``solo_fitter``, ``PackOfOne``), so a seed's numbers are the same, bit for bit, alone or in
any pack of any size, at any position (tests/trainables/test_packed_fit.py). ``fit.Fitter``,
the ``nn.Module`` reference that trains models with dropout, computes the same function to
float tolerance (the same test file). On other devices a pack runs all members at once,
padded to the pack's batch: equal to solo to float tolerance, not bit for bit.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from trainables.config import TrainConfig
from trainables.data import SplitData
from trainables.fit import (EVAL_BATCH, EpochLog, Evaluation, FitState, Fitter, LeakageError, class_weights,
                            learning_rate)
from trainables.metrics import confusion, scores_from_confusion
from trainables.model import EvolutionTransformer
from trainables.packed_model import PackedModel


class PackedAdam:
    """``torch.optim.Adam`` (L2 ``weight_decay``, no amsgrad, ``foreach``) over stacked
    parameters with one step count per member; ``step(members)`` updates those members.

    Each member is updated on its own slices with its own step count, by the ops and in the
    order ``torch.optim.Adam(foreach=True)`` uses: so a member's update is the same whatever
    the other members are, how many there are and whether they step (``PackedFitter``'s
    promise that a member does not depend on its pack)."""

    def __init__(self, params: list[torch.Tensor], lr: float, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0):
        self.params, self.lr, self.betas, self.eps, self.weight_decay = params, lr, betas, eps, weight_decay
        k = params[0].shape[0]
        self.steps = torch.zeros(k, dtype=torch.float64)
        self.exp_avg = [torch.zeros_like(p) for p in params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in params]

    @torch.no_grad()
    def step(self, members: list[int]) -> None:
        b1, b2 = self.betas
        for k in members:
            self.steps[k] += 1
            n = float(self.steps[k])
            params = [p[k] for p in self.params]
            grads = [p.grad[k] for p in self.params]
            exp_avg, exp_avg_sq = [m[k] for m in self.exp_avg], [v[k] for v in self.exp_avg_sq]
            if self.weight_decay:
                grads = torch._foreach_add(grads, params, alpha=self.weight_decay)
            torch._foreach_lerp_(exp_avg, grads, 1 - b1)
            torch._foreach_mul_(exp_avg_sq, b2)
            torch._foreach_addcmul_(exp_avg_sq, grads, grads, value=1 - b2)
            denom = torch._foreach_sqrt(exp_avg_sq)
            torch._foreach_div_(denom, math.sqrt(1 - b2 ** n))
            torch._foreach_add_(denom, self.eps)
            torch._foreach_addcdiv_(params, exp_avg, denom, value=-self.lr / (1 - b1 ** n))

    def member_state(self, k: int, template: dict) -> dict:
        """Member ``k``'s moments as a solo ``torch.optim.Adam.state_dict()`` (``template``:
        a fresh solo optimizer's, for its param groups)."""
        out = copy.deepcopy(template)
        if self.steps[k] > 0:
            out["state"] = {i: {"step": torch.tensor(float(self.steps[k])), "exp_avg": m[k].detach().clone(),
                                "exp_avg_sq": v[k].detach().clone()}
                            for i, (m, v) in enumerate(zip(self.exp_avg, self.exp_avg_sq))}
        return out

    def load_member(self, k: int, state: dict) -> None:
        with torch.no_grad():
            for i, (m, v) in enumerate(zip(self.exp_avg, self.exp_avg_sq)):
                s = state["state"].get(i) or state["state"].get(str(i))
                if s is None:
                    m[k].zero_(), v[k].zero_()
                    continue
                m[k].copy_(s["exp_avg"]), v[k].copy_(s["exp_avg_sq"])
            first = state["state"].get(0) or state["state"].get("0")
            self.steps[k] = float(first["step"]) if first else 0.0


@torch.no_grad()
def clip_members(params: list[torch.Tensor], max_norm: float, members: list[int] | None = None) -> None:
    """``torch.nn.utils.clip_grad_norm_(foreach=True)`` per member (``members``: which; all
    by default): each member's gradient scaled by ``max_norm / (its global norm + 1e-6)``, at
    most 1, computed from its own slices only."""
    for k in range(params[0].shape[0]) if members is None else members:
        grads = [p.grad[k] for p in params]
        total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
        torch._foreach_mul_(grads, (max_norm / (total + 1e-6)).clamp(max=1.0))


Chunk = tuple[slice, torch.Tensor, torch.Tensor]  # members, their tokens [k, B, T, D] and mask [k, B, T]


def packed_step(model: PackedModel, optimizer: PackedAdam, chunks: list[Chunk],
                losses: Callable[[torch.Tensor, slice], torch.Tensor], active: torch.Tensor,
                grad_clip: float, forward: Callable | None = None) -> torch.Tensor:
    """One training step of the active members: per chunk of members, forward,
    ``losses(logits, members)`` (each member's loss, ``[len(members)]``) and backward; then
    per-member clipping (``grad_clip`` > 0) and Adam's step of the chunk's active members
    (``active``: ``[K]`` bools), before the next chunk. Returns the
    losses ``[K]`` (detached; 0 for members in no chunk).

    The members are independent, so a member's gradient is the same whatever the chunk as
    far as the maths goes; a chunk of one on its own batch (``PackedFitter`` on CPU) is also
    the same bit for bit. ``forward``: ``model.forward`` or a compiled one
    (``torch.compile``), called as ``forward(params, tokens, mask)``."""
    params, k = model.parameters(), model.k
    forward = forward or model.forward
    out = torch.zeros(k)
    whole = len(chunks) == 1 and chunks[0][0] == slice(0, k)
    for p in params:
        if whole:
            p.grad = None
        elif p.grad is None or p.grad.shape != p.shape:
            p.grad = torch.zeros_like(p)  # each chunk writes its members' slices
    for members, tokens, mask in chunks:
        if whole:
            loss = losses(forward(model.params, tokens, mask), members)
            loss.sum().backward()
        else:
            # the chunk's own copies: a member's weights start where its solo model's do (on an
            # aligned allocation), not at an offset into the stack that depends on its place
            leaves = {n: p.detach()[members].clone().requires_grad_() for n, p in zip(model.names, params)}
            loss = losses(forward(leaves, tokens, mask), members)
            grads = torch.autograd.grad(loss.sum(), list(leaves.values()))
            for p, g in zip(params, grads):
                p.grad[members].copy_(g)
        out[members] = loss.detach().cpu()
        # the chunk's members step now, while their parameters are still in cache; the next
        # chunk reads other members' slices only
        stepping = [m for m in range(members.start, members.stop) if active[m]]
        if grad_clip > 0:
            clip_members(params, grad_clip, stepping)
        optimizer.step(stepping)
    return out


def default_chunk(k: int, device: torch.device) -> int:
    """Members per forward/backward: one on CPU, each on its own batch, so that a member's
    arithmetic is its alone (the same in any pack, and as its solo trial's), at a measured
    7-14 % per member step at N = 4-8 against larger chunks (docs/PERFORMANCE.md); all ``k``
    at once elsewhere, where one small member leaves a GPU idle."""
    return 1 if device.type == "cpu" else k


class PackedFitter:
    """``Fitter`` for K members at once: ``epochs()`` yields one ``EpochLog`` per member per
    epoch; ``states[k]`` is member k's solo ``FitState``. ``chunk``: members per forward /
    backward and validation (``packed_step``); None: ``default_chunk`` (one member at a time
    on CPU, all K elsewhere)."""

    def __init__(self, members: list[nn.Module], cfg: TrainConfig, seeds: list[int], num_classes: int,
                 trains: list[SplitData], vals: list[SplitData], states: list[FitState | None] | None = None,
                 chunk: int | None = None):
        k = len(members)
        if not (k == len(seeds) == len(trains) == len(vals)):
            raise ValueError(f"a pack of {k} members needs as many seeds, train and validation sets")
        for data, role in [*((t, "train") for t in trains), *((v, "validation") for v in vals)]:
            if data.role != role:
                raise LeakageError(f"PackedFitter: the {role} data given has role {data.role!r}; model "
                                   f"selection sees training and validation data only")
        states = list(states) if states is not None else [None] * k
        self.cfg, self.seeds, self.num_classes, self.trains, self.vals = cfg, list(seeds), num_classes, trains, vals
        self.template = torch.optim.Adam(members[0].parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                                         foreach=True).state_dict()  # as fit.Fitter's
        self.model = PackedModel.from_members(members)
        self.optimizer = PackedAdam(self.model.parameters(), cfg.lr, weight_decay=cfg.weight_decay)
        self.states = [s or FitState() for s in states]
        epochs = {s.epoch for s in self.states}
        if len(epochs) != 1:
            raise ValueError(f"a pack's members must be at the same epoch to train together, got {sorted(epochs)}")
        for i, s in enumerate(self.states):
            if s.model:
                self.model.load_member(i, s.model)
                self.optimizer.load_member(i, s.optimizer)
        self.class_weights = [class_weights(cfg.class_weight, t.labels, num_classes) for t in trains]
        self.token_dim = trains[0].token_dim
        self.chunk = chunk  # members per forward/backward; None: default_chunk

    @property
    def epoch(self) -> int:
        return self.states[0].epoch

    def epochs(self):
        for epoch in range(self.epoch + 1, self.cfg.epochs + 1):
            yield self._one_epoch(epoch)

    def _one_epoch(self, epoch: int) -> list[EpochLog]:
        k, bs = len(self.seeds), self.cfg.batch_size
        self.optimizer.lr = lr = learning_rate(self.cfg, epoch)
        orders = [np.random.default_rng([s, epoch]).permutation(len(t)) for s, t in zip(self.seeds, self.trains)]
        totals, counts = np.zeros(k), np.zeros(k)
        chunk = self.chunk or default_chunk(k, self.trains[0].tokens.device)
        for start in range(0, max(len(o) for o in orders), bs):
            batch = [o[start: start + bs] for o in orders]
            n = np.array([len(b) for b in batch])
            active = torch.from_numpy(n > 0)
            chunks, labels, valid = [], {}, {}
            for first in range(0, k, chunk):
                members = [m for m in range(first, min(first + chunk, k)) if n[m]]
                if not members:
                    continue
                members = slice(members[0], members[-1] + 1)
                tokens, mask, labels[members.start], valid[members.start] = self._batch(batch, members)
                chunks.append((members, tokens, mask))
            losses = packed_step(self.model, self.optimizer, chunks,
                                 lambda logits, m: self._losses(logits, labels[m.start], valid[m.start], m),
                                 active, self.cfg.grad_clip)
            totals += losses.numpy() * n
            counts += n
        logs = []
        for i, ev in enumerate(self._validate()):
            val = ev.scores
            s = self.states[i]
            is_best = val.uf1 > s.best_val_uf1
            s.epoch = epoch
            s.model = self.model.member_state(i)
            s.optimizer = self.optimizer.member_state(i, self.template)
            if is_best:
                s.best_epoch, s.best_val_uf1, s.best_model = epoch, val.uf1, copy.deepcopy(s.model)
            logs.append(EpochLog(epoch, lr, float(totals[i] / max(counts[i], 1)), val, is_best))
        return logs

    def _batch(self, batch: list[np.ndarray], members: slice):
        """The ``members``' batches as one ``[k, B, T, D]``, cut to their longest clip and
        padded to their largest batch (padding rows are not ``valid``: they count nowhere).
        A chunk of one member is its batch exactly, as its solo trial cuts it."""
        batch = batch[members]
        k, b = len(batch), max(len(x) for x in batch)
        trains = self.trains[members]
        dev = trains[0].tokens.device
        idx = [torch.from_numpy(x).to(dev) for x in batch]
        t = max([int(d.mask[i].sum(dim=1).max()) for d, i in zip(trains, idx) if len(i)])
        if k == 1:
            d, i = trains[0], idx[0]
            return (d.tokens[i, :t][None], d.mask[i, :t][None], d.labels[i][None],
                    torch.ones(1, b, dtype=torch.bool, device=dev))
        tokens = torch.zeros(k, b, t, self.token_dim, device=dev)
        mask = torch.zeros(k, b, t, dtype=torch.bool, device=dev)
        labels = torch.zeros(k, b, dtype=torch.int64, device=dev)
        valid = torch.zeros(k, b, dtype=torch.bool, device=dev)
        for m, (d, i) in enumerate(zip(trains, idx)):
            n = len(i)
            if n:
                tt = min(t, d.tokens.shape[1])
                tokens[m, :n, :tt] = d.tokens[i, :tt]
                mask[m, :n, :tt] = d.mask[i, :tt]
                labels[m, :n] = d.labels[i]
                valid[m, :n] = True
        return tokens, mask, labels, valid

    def _losses(self, logits: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor,
                members: slice = slice(None)) -> torch.Tensor:
        """Each member's ``F.cross_entropy`` (mean over its batch, class-weighted if asked):
        ``[k]`` for the ``members`` the logits ``[k, B, C]`` are of."""
        nll = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), reduction="none").view(labels.shape)
        out = []
        for m, w in enumerate(self.class_weights[members]):
            keep = valid[m]
            weight = keep.to(nll.dtype) if w is None else w[labels[m]] * keep
            total = weight.sum()
            out.append((nll[m] * weight).sum() / total if total > 0 else nll[m].sum() * 0.0)
        return torch.stack(out)

    @torch.no_grad()
    def _validate(self) -> list[Evaluation]:
        """Each member on its own validation set, by the packed forward pass: members that
        share a set (an ablation's) a chunk at a time (``default_chunk``: one on CPU)."""
        k = len(self.seeds)
        chunk = self.chunk or default_chunk(k, self.vals[0].tokens.device)
        out: list[Evaluation] = []
        while len(out) < k:
            first = len(out)
            last = first + 1
            while last < k and last - first < chunk and self.vals[last] is self.vals[first]:
                last += 1
            out += _evaluate_packed(self.model, slice(first, last), self.vals[first], self.num_classes)
        return out

    def selected_model(self, k: int) -> nn.Module:
        """Member ``k`` with the parameters of its best validation epoch (a solo model)."""
        s = self.states[k]
        if not s.best_model:
            raise RuntimeError("no epoch has been trained yet")
        model = self.model.member_model(k, self.token_dim, self.num_classes)
        model.load_state_dict(s.best_model)
        return model


def _evaluate_packed(model: PackedModel, members: slice, data: SplitData, num_classes: int) -> list[Evaluation]:
    """``fit.evaluate`` for the ``members`` on the same data, in one packed pass per batch."""
    params = {n: v[members] for n, v in model.params.items()}
    k = members.stop - members.start
    preds = []
    for start in range(0, len(data), EVAL_BATCH):
        sl = slice(start, start + EVAL_BATCH)
        tokens, mask = data.tokens[sl], data.mask[sl]
        logits = model.forward(params, tokens.expand(k, *tokens.shape), mask.expand(k, *mask.shape))
        preds.append(logits.argmax(dim=2).cpu())
    pred = torch.cat(preds, dim=1).numpy()
    truth = data.labels.cpu().numpy()
    out = []
    for p in pred:
        cm = confusion(truth, p, num_classes)
        out.append(Evaluation(scores_from_confusion(cm), p, cm))
    return out


class PackOfOne:
    """A solo trial trained as a pack of one, behind ``fit.Fitter``'s interface (``epochs()``
    yields one ``EpochLog`` per epoch; ``state``, ``train``, ``selected_model()``): the same
    kernels, in the same order, as the seed gets in any pack, so on CPU a solo trial and its
    packed run are the same numbers, bit for bit (tests/trainables/test_packed_fit.py)."""

    def __init__(self, model: nn.Module, cfg: TrainConfig, seed: int, num_classes: int, train: SplitData,
                 val: SplitData, state: FitState | None = None):
        self.pack = PackedFitter([model], cfg, [seed], num_classes, [train], [val], [state])
        self.train = train

    @property
    def state(self) -> FitState:
        return self.pack.states[0]

    def epochs(self):
        for logs in self.pack.epochs():
            yield logs[0]

    def selected_model(self) -> nn.Module:
        return self.pack.selected_model(0)


def solo_fitter(model: nn.Module, cfg: TrainConfig, seed: int, num_classes: int, train: SplitData,
                val: SplitData, state: FitState | None = None) -> "Fitter | PackOfOne":
    """What trains a solo trial: ``PackOfOne`` (so it equals its packed runs), or
    ``fit.Fitter`` where a pack cannot train the model (dropout: ``PackedModel``)."""
    if isinstance(model, EvolutionTransformer) and not model.config.dropout:
        return PackOfOne(model, cfg, seed, num_classes, train, val, state)
    return Fitter(model, cfg, seed, num_classes, train, val, state)
