"""How fast a trial's data reaches its model: orch's trial data path against a plain
PyTorch ``Dataset`` / ``DataLoader`` at the same math, in one run, on the built-in benchmark.

- orch: the store opened once, ``trainables.data.load_split`` (the sampled frames' tokens
  of every clip, padded, once per trial), then each epoch's batches as
  ``trainables.fit.Fitter`` makes them (index the split's tensors, cut to the batch's
  longest clip);
- reference: a map-style ``Dataset`` whose ``__getitem__`` reads one clip's tokens from the
  same store (the same ``token_features``), a ``DataLoader`` (num_workers=0) with a sampler
  giving Fitter's order and a ``collate_fn`` padding to the batch's longest clip — the same
  batches (checked: equal tensors).

Each is timed as (a) data only: producing one epoch's batches, and (b) one epoch of
training (forward, cross-entropy, backward, gradient clipping, Adam) plus the validation
pass, same model, same initialisation, same batches (the losses are printed: equal). orch's
one-time ``load_split`` is shown apart and amortised over a trial's epochs. Best of
``--repeat`` epochs, one torch thread (as a trial), after a warm-up epoch.

Usage: .venv/bin/python bench/data_path.py [--benchmark default] [--workdir orch-work]
       [--length all] [--repeat 3] [--epochs 16]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Sampler

from orchestrator.experiment import Experiment
from orchestrator.protocols import plan
from orchestrator.workdir import Workdir
from storage.sampling import parse_length, uniform_indices
from storage.selection import Roles, label_map
from storage.sources.synthetic import benchmark_spec, ensure_store
from storage.store import FrameStore
from trainables.config import TrialConfig
from trainables.data import fit_to_store, frame_limit, load_split
from trainables.fit import EVAL_BATCH, Fitter, _trim, learning_rate
from trainables.model import create_model
from trainables.tokens import token_features


class ClipTokens(Dataset):
    """One clip's tokens and label per item, read from the store when asked for."""

    def __init__(self, store: FrameStore, rows: np.ndarray, classes: np.ndarray, length: int | None, token: str,
                 grid: int):
        self.store, self.rows, self.classes = store, rows, classes
        self.length, self.token, self.grid = length, token, grid

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, k: int):
        i = int(self.rows[k])
        n = self.store.frame_count(i)
        idx = np.arange(n) if self.length is None else uniform_indices(n, self.length)
        return torch.from_numpy(token_features(self.token, self.store, i, idx, self.grid)), int(self.classes[i])


def pad_collate(items):
    """Pad to the batch's longest clip, with the mask of real frames."""
    t = max(len(x) for x, _ in items)
    tokens = torch.zeros(len(items), t, items[0][0].shape[1])
    mask = torch.zeros(len(items), t, dtype=torch.bool)
    for k, (x, _) in enumerate(items):
        tokens[k, :len(x)] = x
        mask[k, :len(x)] = True
    return tokens, mask, torch.tensor([y for _, y in items])


class FitterOrder(Sampler):
    """Fitter's data order of ``epoch`` (set before each epoch)."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch = n, seed, 1

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        return iter(np.random.default_rng([self.seed, self.epoch]).permutation(self.n).tolist())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--benchmark", default="default")
    ap.add_argument("--workdir", default=os.environ.get("ORCH_WORKDIR", "orch-work"),
                    help="the built-in benchmark store is cached in WORKDIR/stores (as orch does)")
    ap.add_argument("--length", default="all", help="frames per clip (an ablation N, or all)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=16, help="a trial's epochs (orch's load_split is amortised over them)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    path, _ = ensure_store(benchmark_spec(args.benchmark), Workdir.resolve(args.workdir).stores)
    store = FrameStore(path)
    exp = Experiment(name="bench", seeds=(0,), lengths=(args.length,)).with_store(str(path))
    p = plan(exp, store)[0]
    trial = TrialConfig(seed=0, data=exp.trial.data, model=fit_to_store(exp.trial.model, store, []),
                        train=exp.trial.train)
    length = parse_length(args.length)
    d, cfg = trial.data, trial.train
    labels = label_map(d.label_map, store)
    classes = labels.classes
    idx_of = labels.class_indices(store)
    roles = p.roles if isinstance(p.roles, Roles) else Roles.from_dict(p.roles)
    train_rows, val_rows = roles.train.rows(store, idx_of), roles.validation.rows(store, idx_of)

    # -- orch: load_split once, then Fitter's batches --------------------------------------
    def orch_load():
        return (load_split(store, train_rows, "train", idx_of, length, d.token, d.token_grid, frame_limit(trial.model)),
                load_split(store, val_rows, "validation", idx_of, length, d.token, d.token_grid,
                           frame_limit(trial.model)))

    orch_load()  # warm the page cache
    loads = []
    for _ in range(args.repeat):
        t = time.perf_counter()
        train, val = orch_load()
        loads.append(time.perf_counter() - t)
    load_s = min(loads)

    def orch_batches(epoch):
        order = np.random.default_rng([trial.seed, epoch]).permutation(len(train))
        for s in range(0, len(order), cfg.batch_size):
            idx = torch.from_numpy(order[s: s + cfg.batch_size])
            tokens, mask = _trim(train, idx)
            yield tokens, mask, train.labels[idx]

    # -- reference: Dataset + DataLoader ------------------------------------------------------
    sampler = FitterOrder(len(train_rows), trial.seed)
    ref_train = DataLoader(ClipTokens(store, train_rows, idx_of, length, d.token, d.token_grid),
                           batch_size=cfg.batch_size, sampler=sampler, collate_fn=pad_collate, num_workers=0)
    ref_val = DataLoader(ClipTokens(store, val_rows, idx_of, length, d.token, d.token_grid),
                         batch_size=EVAL_BATCH, shuffle=False, collate_fn=pad_collate, num_workers=0)

    def ref_batches(epoch):
        sampler.epoch = epoch
        yield from ref_train

    same = all(torch.equal(a, b) for x, y in zip(orch_batches(1), ref_batches(1)) for a, b in zip(x, y))
    print(f"store: {path} ({len(train_rows)} train / {len(val_rows)} validation clips, N = {args.length}, "
          f"token {d.token}); same batches: {same}")

    def data_only(batches):
        def epoch(e):
            for _ in batches(e):
                pass
        return epoch

    # -- the same training step for both ------------------------------------------------------
    def model_and_opt():
        torch.manual_seed(trial.seed)
        model = create_model(trial.model, train.token_dim, len(classes))
        return model, torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

    orch_model, _ = model_and_opt()
    fitter = Fitter(orch_model, cfg, trial.seed, len(classes), train, val)
    losses = {}

    def orch_epoch(e):  # Fitter's own epoch (its batches, its step, its validation pass)
        losses.setdefault("orch", []).append(fitter._one_epoch(e).train_loss)

    ref_model, ref_opt = model_and_opt()

    def ref_epoch(e):
        for g in ref_opt.param_groups:
            g["lr"] = learning_rate(cfg, e)
        ref_model.train()
        total, n = 0.0, 0
        torch.manual_seed(trial.seed * 100_003 + e)
        for tokens, mask, y in ref_batches(e):
            loss = F.cross_entropy(ref_model(tokens, mask), y, weight=fitter.class_weight)
            ref_opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(ref_model.parameters(), cfg.grad_clip)
            ref_opt.step()
            total += loss.item() * len(y)
            n += len(y)
        ref_model.eval()
        with torch.no_grad():
            for tokens, mask, y in ref_val:
                ref_model(tokens, mask).argmax(dim=1)
        losses.setdefault("ref", []).append(total / n)

    def best(fn, epochs):
        fn(epochs[0])  # warm-up
        times = []
        for e in epochs[1:]:
            t = time.perf_counter()
            fn(e)
            times.append(time.perf_counter() - t)
        return min(times)

    epochs = list(range(1, args.repeat + 2))
    rows = []
    t_ref_data = best(data_only(ref_batches), epochs)
    t_orch_data = best(data_only(orch_batches), epochs)
    rows.append(("data only (one epoch's batches)", t_ref_data, t_orch_data))
    t_ref = best(ref_epoch, epochs)
    t_orch = best(orch_epoch, epochs)
    rows.append(("one training epoch + validation pass", t_ref, t_orch))
    trial_ref, trial_orch = args.epochs * t_ref, load_s + args.epochs * t_orch
    rows.append((f"a trial's {args.epochs} epochs (orch: + load_split once)", trial_ref, trial_orch))
    print(f"orch load_split (train + validation, once per trial): {load_s * 1000:.1f} ms")
    print(f"losses per epoch equal: {np.allclose(losses['orch'], losses['ref'], rtol=1e-5, atol=1e-6)} "
          f"(orch {['%.5f' % x for x in losses['orch']]}, reference {['%.5f' % x for x in losses['ref']]})")
    print(f"\n| what (best of {args.repeat}, 1 thread) | DataLoader reference | orch | reference / orch |")
    print("|---|---|---|---|")
    for what, r, o in rows:
        print(f"| {what} | {r * 1000:.1f} ms | {o * 1000:.1f} ms | {r / o:.2f}x |")


if __name__ == "__main__":
    main()
