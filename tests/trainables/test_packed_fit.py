"""A pack's members train exactly as their solo trials do: bit for bit against what trains a
solo trial (a pack of one), in any pack; to float tolerance against ``fit.Fitter``, the
``nn.Module`` reference. Same metrics every epoch, same best epoch, same parameters — with
ragged members (train sets of different sizes, as the split protocol draws them per seed),
class weights, clipping and weight decay on, and across a checkpoint (the members' solo
FitStates) in the middle."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch

from trainables.config import TrainConfig
from trainables.data import SplitData
from trainables.fit import Fitter
from trainables.model import EvolutionTransformer, ModelConfig
from trainables import packed_model
from trainables.fit import FitState
from trainables.packed_fit import PackedAdam, PackedFitter, PackOfOne, clip_members, solo_fitter

CFG = ModelConfig(dim=16, depth=2, heads=2, dim_head=8, mlp_dim=16, max_frames=12)
TOL = dict(rtol=1e-4, atol=1e-5)  # torch.testing
APPROX = dict(rel=1e-4, abs=1e-5)  # pytest.approx  # float summation order only (batched matmuls, padded batches)


def _split(role: str, n: int, seed: int, classes: int = 3) -> SplitData:
    g = np.random.default_rng(seed)
    lengths = g.integers(4, 13, n)
    labels = g.integers(0, classes, n)
    tokens = np.zeros((n, 12, 6), np.float32)
    mask = np.zeros((n, 12), bool)
    for i, (t, y) in enumerate(zip(lengths, labels)):
        tokens[i, :t] = g.normal(size=(t, 6)) + y  # learnable: the class shifts every frame
        mask[i, :t] = True
    return SplitData(role, [f"c{i}" for i in range(n)], torch.from_numpy(tokens), torch.from_numpy(mask),
                     torch.from_numpy(labels.astype(np.int64)))


def _member(seed: int, config: ModelConfig = CFG) -> EvolutionTransformer:
    torch.manual_seed(seed)  # as the trainable builds a solo model
    return EvolutionTransformer(config, 6, 3)


def _solo(seed, cfg, train, val, state=None, stop=None):
    f = Fitter(_member(seed), cfg, seed, 3, train, val, copy.deepcopy(state))
    logs = []
    for log in f.epochs():
        logs.append(log)
        if stop and log.epoch == stop:
            break
    return f, logs


@pytest.mark.parametrize("class_weight,chunk,attention", [
    ("none", None, "hand"), ("balanced", None, "hand"), ("balanced", 2, "hand"), ("none", 3, "hand"),
    ("balanced", 3, "sdpa")])
def test_the_packed_arithmetic_equals_the_reference_fitter(class_weight, chunk, attention, monkeypatch):
    """``fit.Fitter`` (the solo ``nn.Module``, what trains a model with dropout) and a pack
    compute the same functions: to float tolerance. ``chunk``: members per forward/backward
    in training and validation (None: ``default_chunk``, one on CPU; 2: a chunk of two and
    one of one; 3: all at once, batches padded to the chunk's, as on a GPU); ``attention``:
    the packed forward's hand-written attention (CPU's) or SDPA's (other devices')."""
    torch.set_num_threads(1)
    if attention == "sdpa":
        monkeypatch.setattr(packed_model, "HAND_ATTENTION_DEVICES", ())
    cfg = TrainConfig(epochs=5, batch_size=8, lr=0.01, weight_decay=1e-3, grad_clip=0.5, class_weight=class_weight)
    seeds = [3, 7, 11]
    trains = [_split("train", n, 100 + i) for i, n in enumerate((37, 29, 40))]  # ragged: 5, 4 and 5 batches
    val = _split("validation", 30, 999)
    solos = [_solo(s, cfg, t, val) for s, t in zip(seeds, trains)]
    pack = PackedFitter([_member(s) for s in seeds], cfg, seeds, 3, trains, [val] * 3, chunk=chunk)
    packed = list(pack.epochs())
    assert len(packed) == cfg.epochs
    for k, (fitter, logs) in enumerate(solos):
        for solo_log, member_logs in zip(logs, packed):
            m = member_logs[k]
            assert m.epoch == solo_log.epoch and m.is_best == solo_log.is_best
            assert m.train_loss == pytest.approx(solo_log.train_loss, **APPROX)
            assert m.val.uf1 == pytest.approx(solo_log.val.uf1, abs=1e-9)
        assert pack.states[k].best_epoch == fitter.state.best_epoch
        for name, value in fitter.state.model.items():
            torch.testing.assert_close(pack.states[k].model[name], value, **TOL)


def _bitwise(a: FitState, b: FitState) -> None:
    assert (a.epoch, a.best_epoch, a.best_val_uf1) == (b.epoch, b.best_epoch, b.best_val_uf1)
    for x, y in ((a.model, b.model), (a.best_model, b.best_model)):
        assert all(torch.equal(x[n], y[n]) for n in x), "parameters differ"
    for i, s in a.optimizer["state"].items():
        assert all(torch.equal(s[f], b.optimizer["state"][i][f]) for f in s), "Adam's state differs"


# widths that are no multiple of 16 floats: member k's weights start off a 64-byte boundary in
# the stacked tensor (a chunk copies them into leaves of its own); bit for bit all the same
ODD = ModelConfig(dim=20, depth=2, heads=3, dim_head=7, mlp_dim=13, max_frames=12)


@pytest.mark.parametrize("config", [CFG, ODD], ids=["dims-16", "odd-dims"])
def test_a_member_is_its_solo_trial_bit_for_bit_in_any_pack(config):
    """What trains a solo trial (``solo_fitter``: a pack of one) and the same seed in packs of
    2 and 3, in any position, give the same numbers to the last bit, every epoch: the other
    members' batches, lengths, step counts and validation sets change nothing. Ragged train
    sets (5, 4 and 6 batches: members skip steps), clips of 4-12 frames, class weights,
    clipping, weight decay, and each member validated on its own set or on a shared one."""
    torch.set_num_threads(1)
    cfg = TrainConfig(epochs=5, batch_size=8, lr=0.01, weight_decay=1e-3, grad_clip=0.5, class_weight="balanced")
    seeds = [3, 7, 11]
    trains = [_split("train", n, 100 + i) for i, n in enumerate((37, 29, 45))]
    shared = _split("validation", 30, 999)
    own = [_split("validation", n, 900 + i) for i, n in enumerate((30, 17, 22))]
    for vals in ([shared] * 3, own):
        solos = []
        for s, t, v in zip(seeds, trains, vals):
            f = solo_fitter(_member(s, config), cfg, s, 3, t, v)
            assert isinstance(f, PackOfOne)
            solos.append((f, [log.train_loss for log in f.epochs()]))
        for members in ([0, 1], [1, 0], [2, 0, 1], [0, 1, 2]):
            pack = PackedFitter([_member(seeds[m], config) for m in members], cfg, [seeds[m] for m in members], 3,
                                [trains[m] for m in members], [vals[m] for m in members])
            losses = [[log.train_loss for log in logs] for logs in zip(*pack.epochs())]
            for i, m in enumerate(members):
                assert losses[i] == solos[m][1], f"seed {seeds[m]} in pack {members}"
                _bitwise(pack.states[i], solos[m][0].state)


def test_a_pack_resumes_from_its_members_checkpoints():
    """Members checkpointed at epoch 2 (their solo FitStates) continue as their solo trials
    resumed from the same epoch do; a solo Fitter takes a member's state as its own."""
    torch.set_num_threads(1)
    cfg = TrainConfig(epochs=4, batch_size=8, lr=0.01, grad_clip=1.0)
    seeds, trains, val = [0, 1], [_split("train", 21, 5), _split("train", 30, 6)], _split("validation", 20, 7)
    pack = PackedFitter([_member(s) for s in seeds], cfg, seeds, 3, trains, [val, val])
    for logs in pack.epochs():
        if logs[0].epoch == 2:
            break
    saved = [copy.deepcopy(dataclasses.asdict(s)) for s in pack.states]
    resumed = PackedFitter([_member(s) for s in seeds], cfg, seeds, 3, trains, [val, val],
                           [FitState(**s) for s in saved])
    rest = list(resumed.epochs())
    assert [logs[0].epoch for logs in rest] == [3, 4]
    for k, s in enumerate(seeds):
        _, solo_logs = _solo(s, cfg, trains[k], val, FitState(**saved[k]))  # the member's checkpoint, solo
        assert [l.epoch for l in solo_logs] == [3, 4]
        for solo_log, logs in zip(solo_logs, rest):
            assert logs[k].train_loss == pytest.approx(solo_log.train_loss, **APPROX)
            assert logs[k].val.uf1 == pytest.approx(solo_log.val.uf1, abs=1e-9)


def test_packed_adam_and_clipping_match_torch_per_member():
    torch.manual_seed(0)
    solo = [torch.randn(4, 3, requires_grad=True) for _ in range(3)]
    stacked = torch.stack([p.detach() for p in solo]).clone().requires_grad_(True)
    opts = [torch.optim.Adam([p], lr=0.1, weight_decay=0.01) for p in solo]
    packed = PackedAdam([stacked], lr=0.1, weight_decay=0.01)
    for step in range(4):
        grads = torch.randn(3, 4, 3) * (step + 1)
        active = torch.tensor([True, step % 2 == 0, True])  # member 1 skips two steps
        stacked.grad = grads.clone()
        clip_members([stacked], 1.5)
        packed.step(active.nonzero().flatten().tolist())
        for k, (p, o) in enumerate(zip(solo, opts)):
            if active[k]:
                p.grad = grads[k].clone()
                torch.nn.utils.clip_grad_norm_([p], 1.5)
                o.step()
    for k, p in enumerate(solo):
        torch.testing.assert_close(stacked[k].detach(), p.detach(), rtol=1e-5, atol=1e-6)
    assert packed.steps.tolist() == [4.0, 2.0, 4.0]


def test_a_member_without_a_batch_yet_keeps_its_parameters():
    """A member whose first step is skipped (no batch for it) stays as it was, finite; the
    other member takes torch Adam's first step."""
    p = torch.nn.Parameter(torch.randn(2, 3))
    before = p.detach().clone()
    p.grad = torch.ones(2, 3)
    solo = torch.nn.Parameter(before[0].clone())
    solo.grad = torch.ones(3)
    torch.optim.Adam([solo], lr=0.1).step()
    PackedAdam([p], lr=0.1).step([0])
    assert torch.equal(p.detach()[1], before[1])
    torch.testing.assert_close(p.detach()[0], solo.detach())


def test_members_with_their_own_validation_sets_equal_their_solo_trials():
    """The split and LOSO protocols draw each seed's validation subjects from its seed: each
    member is validated (and its epoch chosen) on its own set, as its solo trial is."""
    torch.set_num_threads(1)
    cfg = TrainConfig(epochs=3, batch_size=8, lr=0.01, grad_clip=1.0)
    seeds = [0, 1]
    trains = [_split("train", 24, 40), _split("train", 30, 41)]
    vals = [_split("validation", 20, 50), _split("validation", 13, 51)]
    solos = [_solo(s, cfg, t, v) for s, t, v in zip(seeds, trains, vals)]
    pack = PackedFitter([_member(s) for s in seeds], cfg, seeds, 3, trains, vals)
    packed = list(pack.epochs())
    for k, (fitter, logs) in enumerate(solos):
        assert [m[k].val.uf1 for m in packed] == pytest.approx([x.val.uf1 for x in logs], abs=1e-9)
        assert [m[k].val.n for m in packed] == [len(vals[k])] * cfg.epochs
        assert pack.states[k].best_epoch == fitter.state.best_epoch
