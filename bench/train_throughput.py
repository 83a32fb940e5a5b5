"""Training throughput of the paper's model against the practical limit of this machine.

One training step (forward, cross-entropy, backward, gradient clipping, Adam) of the model at
batch B and T frames, solo (the plain model, ``torch.optim.Adam`` and ``clip_grad_norm_``,
as ``fit.Fitter`` trains it; "solo every token": the same with the last layer over every
token, as the model ran before only CLS queried there, the issue's baseline) and packed
(``packed_fit.packed_step``: K seeds as one model; K = 1 is what trains a solo trial,
``packed_fit.PackOfOne``; forward and backward ``chunk`` members at a time). The limit is the same matrix products —
every matmul the step ran, recorded with its shapes (SDPA's as the four / two batched
matmuls they are) — replayed as bare ``torch.bmm`` calls on the same thread in the same
run: what the arithmetic alone costs here. Achieved GFLOP/s count those products' FLOPs.

Timing: all configurations are built first, then timed in interleaved rounds (each step,
then its replay, once per round), best of ``--repeat``; by the thread's CPU time
(``--clock cpu``, the default: on a shared machine a preempted step would otherwise count
another process's time) or wall time. The replay's operands are views of two random
buffers (``--limit-operands shared``: hot in cache where they fit, the fastest these shapes
run) or one pair per product (``distinct``: cold, as K members' activations are).

Prints, per configuration: ms per step and per member, GFLOP/s achieved, the limit's
GFLOP/s, achieved / limit, and the throughput (member steps per second) against solo.
Usage: .venv/bin/python bench/train_throughput.py [--packs 1,4,10,30] [--chunks 0] [--repeat 5]
       [--batch 32] [--frames 31] [--threads 1] [--clock cpu|wall] [--limit-operands shared|distinct]
       [--compile fwd,fwd-dynamic,fwd-autotune,fwd+update]
``--compile``: each K's packed step again with ``torch.compile`` (COMPILE_VARIANTS), timed in
the same rounds against the same limit (the uncompiled step's products); the first step's
wall time is the compile time (cold with ``TORCHINDUCTOR_CACHE_DIR`` a new empty folder, warm
when a previous run filled it).
"""

from __future__ import annotations

import argparse
import os
import time

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from trainables.model import EvolutionTransformer, ModelConfig
from trainables.packed_fit import PackedAdam, default_chunk, packed_step
from trainables.packed_model import PackedModel

aten = torch.ops.aten
TOKEN_DIM, CLASSES = 36, 7  # flow_roi tokens (18 regions x 2), DFME's 7 classes


class MatmulShapes(TorchDispatchMode):
    """Records the (batch, m, k, n) of every matrix product a step runs."""

    def __init__(self):
        super().__init__()
        self.products: list[tuple[int, int, int, int]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        p = func._overloadpacket
        if p in (aten.mm, aten.addmm, aten.addmm_):
            a, b = (args[0], args[1]) if p is aten.mm else (args[1], args[2])
            self.products.append((1, a.shape[0], a.shape[1], b.shape[1]))
        elif p in (aten.bmm, aten.baddbmm, aten.baddbmm_):
            a, b = (args[0], args[1]) if p is aten.bmm else (args[1], args[2])
            self.products.append((a.shape[0], a.shape[1], a.shape[2], b.shape[2]))
        elif "scaled_dot_product" in str(p) and "backward" not in str(p):
            q, k = args[0], args[1]
            bh, t, d, s = q.shape[0] * q.shape[1], q.shape[2], q.shape[3], k.shape[2]
            self.products += [(bh, t, d, s), (bh, t, s, d)]  # QK^T, AV
        elif "scaled_dot_product" in str(p):  # backward: dV, dP, dQ, dK
            q, k = args[1], args[2]
            bh, t, d, s = q.shape[0] * q.shape[1], q.shape[2], q.shape[3], k.shape[2]
            self.products += [(bh, s, t, d), (bh, t, d, s), (bh, t, s, d), (bh, s, t, d)]
        elif "mm" in str(p) or "matmul" in str(p) or "einsum" in str(p):
            raise NotImplementedError(f"MatmulShapes: a matrix product it does not count: {p}")
        return func(*args, **kwargs)


def make_step(k: int, batch: int, frames: int, chunk: int = 0, variant: str = ""):
    """A training step of k members (k = 0: the solo model, as fit.Fitter trains it).
    ``variant``: packed, a ``COMPILE_VARIANTS`` name, the step with torch.compile; solo,
    ``"every token"``: the model's last layer over every token, as before its shortcut."""
    cfg = ModelConfig(max_frames=frames)
    members = []
    for seed in range(max(k, 1)):
        torch.manual_seed(seed)
        members.append(EvolutionTransformer(cfg, TOKEN_DIM, CLASSES))
    g = torch.Generator().manual_seed(0)
    if k == 0:
        model = members[0]
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, foreach=True)  # as fit.Fitter
        x, mask = torch.randn(batch, frames, TOKEN_DIM, generator=g), torch.ones(batch, frames, dtype=torch.bool)
        y = torch.randint(0, CLASSES, (batch,), generator=g)

        def step():
            loss = F.cross_entropy(model(x, mask, every_token=variant == "every token"), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0, foreach=True)
            opt.step()
        return step, 1
    pack = PackedModel.from_members(members)
    opt = PackedAdam(pack.parameters(), lr=1e-3)
    active = torch.ones(k, dtype=torch.bool)
    x = torch.randn(k, batch, frames, TOKEN_DIM, generator=g)
    mask = torch.ones(k, batch, frames, dtype=torch.bool)
    y = torch.randint(0, CLASSES, (k, batch), generator=g)
    chunk = chunk or default_chunk(k, x.device)
    chunks = [(slice(i, min(i + chunk, k)), x[i: i + chunk], mask[i: i + chunk]) for i in range(0, k, chunk)]

    def losses(logits, members):
        n = logits.shape[0]
        return F.cross_entropy(logits.flatten(0, 1), y[members].flatten(), reduction="none").view(n, batch).mean(dim=1)

    forward, clip = None, 1.0
    if variant:
        v = COMPILE_VARIANTS[variant]
        forward = torch.compile(pack.forward, fullgraph=True, dynamic=v["dynamic"], mode=v["mode"],
                                options=v.get("options"))
        if v["update"]:  # clipping and Adam as one compiled function
            opt, clip = CompiledUpdate(opt, 1.0), 0.0

    def step():
        packed_step(pack, opt, chunks, losses, active, clip, forward)
    return step, chunk


# torch.compile of the packed step: the chunk's forward pass (backward through AOTAutograd),
# default or max-autotune mode, static or dynamic shapes, the compiled graph called from C++
# rather than Python (cpp_wrapper); "+update": clipping and PackedAdam compiled too
COMPILE_VARIANTS = {
    "fwd": dict(mode=None, dynamic=False, update=False),
    "fwd-dynamic": dict(mode=None, dynamic=True, update=False),
    "fwd-autotune": dict(mode="max-autotune-no-cudagraphs", dynamic=False, update=False),
    "fwd-cpp-wrapper": dict(mode=None, dynamic=False, update=False, options={"cpp_wrapper": True}),
    "fwd+update": dict(mode=None, dynamic=False, update=True),
}


class CompiledUpdate:
    """``clip_members`` + ``PackedAdam.step`` as one compiled function of the tensors
    (per-member step counts and the active mask as tensors, so no recompiles)."""

    def __init__(self, adam: PackedAdam, max_norm: float):
        self.adam, self.max_norm = adam, max_norm
        self.fn = torch.compile(_clip_and_adam, fullgraph=True, dynamic=False)
        self.lr = torch.tensor(adam.lr, dtype=torch.float64)

    def step(self, members):
        """``packed_step`` calls this after each chunk; the compiled update runs once, for
        all members, after the last chunk (the bench's members all step every time)."""
        a = self.adam
        if members[-1] != a.steps.shape[0] - 1:
            return
        active = torch.ones(a.steps.shape[0], dtype=torch.bool)
        a.steps += active.to(a.steps.dtype)
        self.fn(a.params, [p.grad for p in a.params], a.exp_avg, a.exp_avg_sq, a.steps, active, self.lr,
                self.max_norm, a.betas[0], a.betas[1], a.eps, a.weight_decay)


@torch.no_grad()
def _clip_and_adam(params, grads, exp_avg, exp_avg_sq, steps, active, lr, max_norm, b1, b2, eps, weight_decay):
    sq = sum(g.flatten(1).pow(2).sum(dim=1) for g in grads)
    coef = (max_norm / (sq.sqrt() + 1e-6)).clamp(max=1.0) if max_norm > 0 else torch.ones_like(sq)
    stepped = steps > 0
    bc1 = torch.where(stepped, 1 - b1 ** steps, 1.0)
    bc2_sqrt = torch.where(stepped, (1 - b2 ** steps).sqrt(), 1.0)
    step_size = torch.where(active, lr / bc1, 0.0)
    for p, g, m, v in zip(params, grads, exp_avg, exp_avg_sq):
        shape = (-1,) + (1,) * (p.dim() - 1)
        on = active.view(shape)
        g = g * coef.to(g.dtype).view(shape)
        if weight_decay:
            g = g + weight_decay * p
        m.copy_(torch.where(on, m.lerp(g, 1 - b1), m))
        v.copy_(torch.where(on, v * b2 + (1 - b2) * g * g, v))
        denom = v.sqrt() / bc2_sqrt.to(p.dtype).view(shape) + eps
        p.sub_(step_size.to(p.dtype).view(shape) * m / denom)


def timed(fn, clock) -> float:
    t = clock()
    fn()
    return clock() - t


def matmul_replay(products, shared: bool):
    """The step's matrix products alone, as bare batched matmuls on random operands: each
    product with operands of its own (``shared=False``: cold, as K members' activations
    are), or all of them views of two buffers (``shared=True``: cache-hot where they fit)."""
    g = torch.Generator().manual_seed(1)
    if shared:
        pool_a = torch.randn(max(b * m * kk for b, m, kk, _ in products), generator=g)
        pool_b = torch.randn(max(b * kk * n for b, _, kk, n in products), generator=g)
        operands = [(pool_a[: b * m * kk].view(b, m, kk), pool_b[: b * kk * n].view(b, kk, n))
                    for b, m, kk, n in products]
    else:
        operands = [(torch.randn(b, m, kk, generator=g), torch.randn(b, kk, n, generator=g))
                    for b, m, kk, n in products]

    def replay():
        for a, c in operands:
            torch.bmm(a, c)
    return replay


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--packs", default="1,4,10,30")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--frames", type=int, default=31)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--chunks", default="0", help="members per forward/backward, one row each (0: default_chunk)")
    ap.add_argument("--clock", choices=["cpu", "wall"], default="cpu")
    ap.add_argument("--compile", default="", help="comma list of COMPILE_VARIANTS: each K's packed step "
                    "again with torch.compile, in the same rounds (limit: the uncompiled step's products)")
    ap.add_argument("--limit-operands", choices=["shared", "distinct"], default="shared")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), batch {args.batch}, {args.frames} frames; "
          f"best of {args.repeat} rounds, each timing every configuration and its limit once; "
          f"limit operands {args.limit_operands}")
    configs, seen = [], set()
    runs = [(0, 0, ""), (0, 0, "every token")]
    runs += [(int(k), int(c), "") for k in args.packs.split(",") for c in args.chunks.split(",")]
    variants = [v for v in args.compile.split(",") if v]
    runs += [(int(k), int(c), v) for v in variants for k in args.packs.split(",") for c in args.chunks.split(",")]
    if variants:
        print(f"torch.compile variants {variants}; inductor cache {os.environ.get('TORCHINDUCTOR_CACHE_DIR', 'default')}")
    limits = {}
    for k, chunk, variant in runs:
        step, chunk = make_step(k, args.batch, args.frames, chunk, variant)
        chunk = min(chunk, max(k, 1))
        if (k, chunk, variant) in seen:
            continue
        seen.add((k, chunk, variant))
        first = time.perf_counter()
        step()  # compiles, for a compiled step
        first = time.perf_counter() - first
        if variant and k:  # the same products as the uncompiled step of these members and chunk
            replay, limit_flops = limits[(k, chunk, "")]
        else:
            rec = MatmulShapes()
            with rec:
                step()
            replay = matmul_replay(rec.products, args.limit_operands == "shared")
            replay()  # warm up
            limit_flops = sum(2 * b * m * kk * n for b, m, kk, n in rec.products)
            limits[(k, chunk, variant)] = replay, limit_flops
        if variant and k:
            step()  # AOTAutograd may finish compiling on the second call
            print(f"compiled {variant} K={k} chunk {chunk}: first step {first:.1f} s (wall, compiling)", flush=True)
        configs.append(dict(k=k, chunk=chunk, variant=variant, step=step, replay=replay,
                            limit_flops=limit_flops, t=float("inf"), limit_t=float("inf")))
    # the clock: the thread's CPU time by default (on a shared machine a step preempted by
    # another process's would otherwise count the other's time), or wall time
    clock = time.thread_time if args.clock == "cpu" else time.perf_counter
    load = os.getloadavg()[0]
    for _ in range(args.repeat):  # interleaved: load that comes and goes hits every configuration alike
        for c in configs:
            c["t"] = min(c["t"], timed(c["step"], clock))
            c["limit_t"] = min(c["limit_t"], timed(c["replay"], clock))
    print(f"load average (1 min) {load:.2f} before the timed rounds, {os.getloadavg()[0]:.2f} after; "
          f"clock: {args.clock}")
    print(f"{'config':>24} {'chunk':>5} {'ms/step':>9} {'ms/member':>10} {'GFLOP/s':>8} {'limit':>8} "
          f"{'of limit':>9} {'vs solo':>8}" + (f" {'vs uncompiled':>13}" if variants else ""))
    solo_member_s = configs[0]["t"]
    plain = {(c["k"], c["chunk"]): c["t"] for c in configs if not c["variant"]}
    for c in configs:
        k, t = c["k"], c["t"]
        per_member = t / max(k, 1)
        achieved, limit = c["limit_flops"] / t, c["limit_flops"] / c["limit_t"]
        name = ("solo" if k == 0 else f"packed {k}") + (f" {c['variant']}" if c["variant"] else "")
        print(f"{name:>24} {c['chunk']:5d} {t * 1e3:9.1f} {per_member * 1e3:10.1f} {achieved / 1e9:8.1f} "
              f"{limit / 1e9:8.1f} {achieved / limit:9.0%} {solo_member_s / per_member:7.2f}x"
              + (f" {plain[(k, c['chunk'])] / t:12.2f}x" if c["variant"] and k else ""))
    if variants:
        from torch._dynamo.utils import counters
        print("dynamo:", {key: dict(counters[key]) for key in ("frames", "stats", "recompiles") if counters[key]})


if __name__ == "__main__":
    main()
