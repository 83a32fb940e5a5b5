"""The epoch loop of one model, the reference: cross-entropy, Adam at the paper's initial learning rate with
a cosine decay per epoch, model selection on the *validation* split only.

The test split never enters the loop: ``Fitter`` accepts only data whose role is
``train`` and ``validation`` (``LeakageError`` otherwise), keeps the parameters of the
epoch with the best validation UF1 (earliest on ties), and ``evaluate`` on a test set is
called once, afterwards, with those parameters.

Every random choice derives from the seed and the epoch number (initialisation from the
seed; the epoch's data order and dropout from ``(seed, epoch)``), so a trial resumed from a
checkpoint at epoch k continues exactly as the uninterrupted trial would.

A trial trains with ``packed_fit.solo_fitter``: a pack of one, the same loop over the packed
kernels, which a pack's members equal bit for bit; ``Fitter`` trains the models a pack
cannot (dropout) and is what the packed loop is tested against, to float tolerance.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from trainables.config import TrainConfig
from trainables.data import SplitData
from trainables.metrics import Scores, confusion, scores_from_confusion

EVAL_BATCH = 256


class LeakageError(Exception):
    """Test data (or test metrics) offered to code that selects a model or stops early."""


@dataclass
class Evaluation:
    scores: Scores | None  # None for an unlabelled test set (predictions only)
    predictions: np.ndarray  # [N] predicted class indices
    confusion: np.ndarray  # [K, K]


@dataclass
class EpochLog:
    epoch: int  # 1-based
    lr: float
    train_loss: float
    val: Scores
    is_best: bool


@dataclass
class FitState:
    """Everything needed to continue a trial: the checkpoint's content."""

    epoch: int = 0  # epochs completed
    model: dict = field(default_factory=dict)
    optimizer: dict = field(default_factory=dict)
    best_epoch: int = 0
    best_val_uf1: float = -1.0
    best_model: dict = field(default_factory=dict)


def learning_rate(cfg: TrainConfig, epoch: int) -> float:
    """Cosine decay from ``lr`` (epoch 1) to ``lr * lr_final_ratio`` (last epoch)."""
    if cfg.epochs <= 1:
        return cfg.lr
    frac = (epoch - 1) / (cfg.epochs - 1)
    low = cfg.lr * cfg.lr_final_ratio
    return low + (cfg.lr - low) * 0.5 * (1 + math.cos(math.pi * frac))


@torch.no_grad()
def evaluate(model: nn.Module, data: SplitData, num_classes: int) -> Evaluation:
    model.eval()
    preds = []
    for start in range(0, len(data), EVAL_BATCH):
        sl = slice(start, start + EVAL_BATCH)
        preds.append(model(data.tokens[sl], data.mask[sl]).argmax(dim=1).cpu())
    pred = torch.cat(preds).numpy()
    if not data.labelled:
        return Evaluation(None, pred, np.zeros((num_classes, num_classes), np.int64))
    cm = confusion(data.labels.cpu().numpy(), pred, num_classes)
    return Evaluation(scores_from_confusion(cm), pred, cm)


def class_weights(kind: str, labels: torch.Tensor, num_classes: int) -> torch.Tensor | None:
    """``none``: plain cross-entropy; ``balanced``: class c weighted n / (K * n_c) over the
    classes present in training (absent classes weigh 0; they have no samples anyway)."""
    if kind == "none":
        return None
    if kind != "balanced":
        raise ValueError(f"train.class_weight: expected 'none' or 'balanced', got {kind!r}")
    counts = torch.bincount(labels, minlength=num_classes).to(torch.float32)
    present = counts > 0
    w = torch.zeros(num_classes, dtype=torch.float32, device=labels.device)
    w[present] = counts.sum() / (present.sum() * counts[present])
    return w


def _trim(data: SplitData, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch cut to its longest clip, so short clips don't pay for long ones."""
    mask = data.mask[idx]
    t = int(mask.sum(dim=1).max())
    return data.tokens[idx, :t], mask[:, :t]


class Fitter:
    def __init__(self, model: nn.Module, cfg: TrainConfig, seed: int, num_classes: int,
                 train: SplitData, val: SplitData, state: FitState | None = None):
        for data, role in ((train, "train"), (val, "validation")):
            if data.role != role:
                raise LeakageError(f"Fitter: the {role} data given has role {data.role!r}; model selection "
                                   f"sees training and validation data only")
        self.model, self.cfg, self.seed, self.num_classes = model, cfg, seed, num_classes
        self.train, self.val = train, val
        self.class_weight = class_weights(cfg.class_weight, train.labels, num_classes)
        # foreach: one op over all tensors instead of one per tensor (on CPU the default is the loop);
        # the same arithmetic in the same order, bit for bit
        self.optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=True)
        self.state = state or FitState()
        if state is not None and state.model:
            model.load_state_dict(state.model)
            self.optimizer.load_state_dict(state.optimizer)

    def epochs(self):
        """Train the remaining epochs, yielding an ``EpochLog`` after each."""
        for epoch in range(self.state.epoch + 1, self.cfg.epochs + 1):
            yield self._one_epoch(epoch)

    def _one_epoch(self, epoch: int) -> EpochLog:
        lr = learning_rate(self.cfg, epoch)
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        torch.manual_seed(self.seed * 100_003 + epoch)  # dropout, if any
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.train))
        self.model.train()
        total, n = 0.0, 0
        for start in range(0, len(order), self.cfg.batch_size):
            idx = torch.from_numpy(order[start: start + self.cfg.batch_size]).to(self.train.tokens.device)
            tokens, mask = _trim(self.train, idx)
            loss = F.cross_entropy(self.model(tokens, mask), self.train.labels[idx], weight=self.class_weight)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip, foreach=True)
            self.optimizer.step()
            total += loss.item() * len(idx)
            n += len(idx)
        val = evaluate(self.model, self.val, self.num_classes).scores
        is_best = val.uf1 > self.state.best_val_uf1
        s = self.state
        s.epoch = epoch
        if is_best:
            s.best_epoch, s.best_val_uf1 = epoch, val.uf1
            s.best_model = copy.deepcopy(self.model.state_dict())
        s.model = self.model.state_dict()
        s.optimizer = self.optimizer.state_dict()
        return EpochLog(epoch, lr, total / max(n, 1), val, is_best)

    def selected_model(self) -> nn.Module:
        """The model with the parameters of the best validation epoch."""
        if not self.state.best_model:
            raise RuntimeError("no epoch has been trained yet")
        best = copy.deepcopy(self.model)
        best.load_state_dict(self.state.best_model)
        return best
