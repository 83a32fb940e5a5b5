"""The epoch loop of a pack: K seeds of one configuration trained at once as a
``PackedModel``, each member exactly as ``fit.Fitter`` trains it alone.

What is per member, as in its solo trial: initialisation (the solo model built from its
seed), data order (``(seed, epoch)``), its own train and validation data (the split
protocol draws them per seed), class weights, the loss (a mean over its own batch), the
gradient-norm clipping, Adam's moments *and step count* (``PackedAdam``: a member whose
epoch has fewer batches than another's skips the steps it has no batch for), and the
best-validation epoch with its parameters. State goes in and out as one solo ``FitState``
per member, so a member's checkpoint is its solo trial's.

The only difference from K solo trials is float summation order (batched matmuls, batches
padded to the pack's longest clip, padding masked out): a member's metrics equal its solo
trial's to float tolerance (tests/trainables/test_packed_fit.py).
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
from trainables.fit import EVAL_BATCH, EpochLog, Evaluation, FitState, LeakageError, class_weights, evaluate, learning_rate
from trainables.metrics import confusion, scores_from_confusion
from trainables.packed_model import PackedModel


class PackedAdam:
    """``torch.optim.Adam`` (L2 ``weight_decay``, no amsgrad) over stacked parameters with
    one step count per member; ``step(active)`` updates only the active members."""

    def __init__(self, params: list[torch.Tensor], lr: float, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0):
        self.params, self.lr, self.betas, self.eps, self.weight_decay = params, lr, betas, eps, weight_decay
        k = params[0].shape[0]
        self.steps = torch.zeros(k, dtype=torch.float64)
        self.exp_avg = [torch.zeros_like(p) for p in params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in params]

    @torch.no_grad()
    def step(self, active: torch.Tensor) -> None:
        b1, b2 = self.betas
        self.steps += active.to(self.steps.dtype)
        if not bool(active.all()):
            return self._step_some(active)
        # every member steps (all but an epoch's last few batches of ragged members): the
        # update is torch.optim.Adam's, as foreach ops over all tensors at once
        params = self.params
        grads = [p.grad for p in params]
        if self.weight_decay:
            grads = torch._foreach_add(grads, params, alpha=self.weight_decay)
        torch._foreach_lerp_(self.exp_avg, grads, 1 - b1)
        torch._foreach_mul_(self.exp_avg_sq, b2)
        torch._foreach_addcmul_(self.exp_avg_sq, grads, grads, value=1 - b2)
        denom = torch._foreach_sqrt(self.exp_avg_sq)
        steps = self.steps.tolist()
        if len(set(steps)) == 1:  # one step count: Adam's scalars
            n = steps[0]
            torch._foreach_div_(denom, math.sqrt(1 - b2 ** n))
            torch._foreach_add_(denom, self.eps)
            torch._foreach_addcdiv_(params, self.exp_avg, denom, value=-self.lr / (1 - b1 ** n))
            return
        bc2_sqrt = (1 - b2 ** self.steps).sqrt()
        step_size = self.lr / (1 - b1 ** self.steps)
        torch._foreach_div_(denom, self._per_member(bc2_sqrt))
        torch._foreach_add_(denom, self.eps)
        update = torch._foreach_div(self.exp_avg, denom)
        torch._foreach_mul_(update, self._per_member(step_size))
        torch._foreach_sub_(params, update)

    def _per_member(self, values: torch.Tensor) -> list[torch.Tensor]:
        """A ``[K]`` vector as one broadcastable view per parameter."""
        p0 = self.params[0]
        v = values.to(p0.dtype).to(p0.device)
        return [v.view((-1,) + (1,) * (p.dim() - 1)) for p in self.params]

    def _step_some(self, active: torch.Tensor) -> None:
        """Only the active members step; the others keep parameters and moments."""
        b1, b2 = self.betas
        stepped = self.steps > 0  # a member that never stepped (no batch yet) keeps finite, unused scalars
        bc1 = torch.where(stepped, 1 - b1 ** self.steps, 1.0)
        bc2_sqrt = torch.where(stepped, (1 - b2 ** self.steps).sqrt(), 1.0)
        step_size = torch.where(active, self.lr / bc1, 0.0)
        for p, m, v in zip(self.params, self.exp_avg, self.exp_avg_sq):
            shape = (-1,) + (1,) * (p.dim() - 1)
            on = active.view(shape).to(p.device)
            g = p.grad if self.weight_decay == 0 else p.grad.add(p, alpha=self.weight_decay)
            m.copy_(torch.where(on, m.lerp(g, 1 - b1), m))
            v.copy_(torch.where(on, v * b2 + (1 - b2) * g * g, v))
            denom = v.sqrt() / bc2_sqrt.to(p.dtype).view(shape).to(p.device) + self.eps
            p.sub_(step_size.to(p.dtype).view(shape).to(p.device) * m / denom)

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


def clip_members(params: list[torch.Tensor], max_norm: float) -> None:
    """``torch.nn.utils.clip_grad_norm_`` per member: each member's gradient scaled by
    ``max_norm / (its global norm + 1e-6)``, at most 1."""
    grads = [p.grad for p in params]
    sq = torch.stack([g.flatten(1).pow(2).sum(dim=1, dtype=torch.float32) for g in grads]).sum(dim=0)
    coef = (max_norm / (sq.sqrt() + 1e-6)).clamp(max=1.0).to(grads[0].dtype)
    torch._foreach_mul_(grads, [coef.view((-1,) + (1,) * (g.dim() - 1)) for g in grads])


def packed_step(model: PackedModel, optimizer: PackedAdam, tokens: torch.Tensor, mask: torch.Tensor,
                losses: Callable[[torch.Tensor, slice], torch.Tensor], active: torch.Tensor,
                grad_clip: float, chunk: int, forward: Callable | None = None) -> torch.Tensor:
    """One training step of every member: forward, ``losses(logits, members)`` (each
    member's loss, ``[len(members)]``), backward, per-member clipping (``grad_clip`` > 0),
    ``optimizer.step(active)``; returns the losses ``[K]`` (detached).

    Forward and backward run ``chunk`` members at a time (the rest of the step, all at
    once): a chunk's activations stay in the CPU's cache between the operations that make
    and use them, where K members' would not. The members are independent, so the
    gradients are the same whatever the chunk. ``forward``: ``model.forward`` or a compiled
    one (``torch.compile``), called as ``forward(params, tokens, mask)``."""
    params, k = model.parameters(), model.k
    forward = forward or model.forward
    out = []
    if chunk >= k:
        for p in params:
            p.grad = None
        loss = losses(forward(model.params, tokens, mask), slice(0, k))
        loss.sum().backward()
        out.append(loss.detach())
    else:
        for p in params:
            if p.grad is None:
                p.grad = torch.empty_like(p)
        for start in range(0, k, chunk):
            members = slice(start, min(start + chunk, k))
            leaves = {n: p.detach()[members].requires_grad_() for n, p in zip(model.names, params)}
            loss = losses(forward(leaves, tokens[members], mask[members]), members)
            grads = torch.autograd.grad(loss.sum(), list(leaves.values()))
            for p, g in zip(params, grads):
                p.grad[members].copy_(g)
            out.append(loss.detach())
    if grad_clip > 0:
        clip_members(params, grad_clip)
    optimizer.step(active)
    return torch.cat(out)


def default_chunk(k: int, batch: int, frames: int, device: torch.device) -> int:
    """Members per forward/backward chunk: on CPU about ``CHUNK_TOKENS`` tokens (the
    measured best, bench/train_throughput.py); elsewhere all ``k`` at once."""
    if device.type != "cpu":
        return k
    return max(1, min(k, CHUNK_TOKENS // max(1, batch * frames)))


CHUNK_TOKENS = 1024  # one member at batch 32 x 32 tokens: measured as fast as two, or faster


class PackedFitter:
    """``Fitter`` for K members at once: ``epochs()`` yields one ``EpochLog`` per member per
    epoch; ``states[k]`` is member k's solo ``FitState``. ``chunk``: members per forward /
    backward (``packed_step``); None: ``default_chunk`` of each batch (one member at a time
    on CPU at the paper's sizes, all K elsewhere)."""

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
        self.chunk = chunk  # members per forward/backward; None: default_chunk of each batch

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
        for start in range(0, max(len(o) for o in orders), bs):
            batch = [o[start: start + bs] for o in orders]
            tokens, mask, labels, valid = self._batch(batch)
            active = torch.tensor([len(b) > 0 for b in batch])
            chunk = self.chunk or default_chunk(k, tokens.shape[1], tokens.shape[2], tokens.device)
            losses = packed_step(self.model, self.optimizer, tokens, mask,
                                 lambda logits, m: self._losses(logits, labels[m], valid[m], m),
                                 active, self.cfg.grad_clip, chunk)
            n = np.array([len(b) for b in batch])
            totals += losses.cpu().numpy() * n
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

    def _batch(self, batch: list[np.ndarray]):
        """The members' batches as one ``[K, B, T, D]``, cut to the pack's longest clip and
        padded to its largest batch (padding rows are not ``valid``: they count nowhere)."""
        k, b = len(batch), max(len(x) for x in batch)
        dev = self.trains[0].tokens.device
        idx = [torch.from_numpy(x).to(dev) for x in batch]
        t = max([int(d.mask[i].sum(dim=1).max()) for d, i in zip(self.trains, idx) if len(i)])
        tokens = torch.zeros(k, b, t, self.token_dim, device=dev)
        mask = torch.zeros(k, b, t, dtype=torch.bool, device=dev)
        labels = torch.zeros(k, b, dtype=torch.int64, device=dev)
        valid = torch.zeros(k, b, dtype=torch.bool, device=dev)
        for m, (d, i) in enumerate(zip(self.trains, idx)):
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
        """Each member on its own validation set; one packed pass when they share one."""
        if all(v is self.vals[0] for v in self.vals):
            return _evaluate_packed(self.model, self.vals[0], self.num_classes)
        return [evaluate(self.model.member_model(i, self.token_dim, self.num_classes), v, self.num_classes)
                for i, v in enumerate(self.vals)]

    def selected_model(self, k: int) -> nn.Module:
        """Member ``k`` with the parameters of its best validation epoch (a solo model)."""
        s = self.states[k]
        if not s.best_model:
            raise RuntimeError("no epoch has been trained yet")
        model = self.model.member_model(k, self.token_dim, self.num_classes)
        model.load_state_dict(s.best_model)
        return model


def _evaluate_packed(model: PackedModel, data: SplitData, num_classes: int) -> list[Evaluation]:
    """``fit.evaluate`` for every member on the same data, in packed passes."""
    preds = []
    for start in range(0, len(data), EVAL_BATCH):
        sl = slice(start, start + EVAL_BATCH)
        tokens, mask = data.tokens[sl], data.mask[sl]
        k = model.k
        chunk = default_chunk(k, tokens.shape[0], tokens.shape[1], tokens.device)
        logits = torch.cat([model.forward({n: v[m] for n, v in model.params.items()},
                                          tokens.expand(m.stop - m.start, *tokens.shape),
                                          mask.expand(m.stop - m.start, *mask.shape))
                            for m in (slice(i, min(i + chunk, k)) for i in range(0, k, chunk))])
        preds.append(logits.argmax(dim=2).cpu())
    pred = torch.cat(preds, dim=1).numpy()
    truth = data.labels.cpu().numpy()
    out = []
    for p in pred:
        cm = confusion(truth, p, num_classes)
        out.append(Evaluation(scores_from_confusion(cm), p, cm))
    return out

