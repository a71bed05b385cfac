"""Muon, SOAP, PSGD-Kron and Scion as ``build_optimizer`` builds them, against the authors' originals, side by side.

    mkdir -p /tmp/orig   # the originals stay outside the repo; they are loaded from there, never copied in
    git -C <KellerJordan/Muon> show HEAD:muon.py > /tmp/orig/muon.py
    git -C <nikhilvyas/SOAP> show HEAD:soap.py > /tmp/orig/soap.py
    git -C <evanatyourservice/kron_torch> show HEAD:kron_torch/kron.py > /tmp/orig/kron.py
    git -C <LIONS-EPFL/scion> show HEAD:scion.py > /tmp/orig/scion.py
    python benchmarks/optimizer_reference.py --muon /tmp/orig/muon.py --soap /tmp/orig/soap.py \
        --kron /tmp/orig/kron.py --scion /tmp/orig/scion.py [--steps 50] [--weight-decay 0.1]

The problem: a toy model with three hidden matrices 192x128, 128x192, 128x128, a 256x128 embedding tied to the
output (an ``nn.Embedding``, routed as the LM-head/embedding group) and a 128-wide gain; cross-entropy on fixed
random tokens (one generator seed per step). Both sides start from the same weights and see the same batches;
each side's gradient is taken at its own weights. The original is given exactly the param groups our
``CombinedOptimizer`` holds (same parameters, order, lr, weight decay), with every hyperparameter mapped one to
one (printed); the groups our package hands to AdamW (Muon's and Scion's side groups) get ``torch.optim.AdamW``
with the same settings on the original side, as the authors' framework (gvlassis/ant) does.

Printed per optimizer and parameter: ||W_ours - W_orig|| / ||W_orig - W_0|| (the difference relative to the
distance the original moved) after 1 step and after ``--steps``, and the same for the original against itself
started from weights perturbed by 1e-7 relative (float32 rounding amplified by the dynamics: a difference at this
"floor" is rounding, not a different algorithm). For the bf16 Newton-Schulz methods the script also measures
the orthogonalisation alone against a float64 evaluation of the same polynomial.

torch.compile is disabled (TORCHDYNAMO_DISABLE=1, set before torch is imported): the originals compile some
functions, which changes nothing but the rounding, and inductor's RNG would not replay torch's eager RNG (Kron's
random probe vectors). Both Kron runs start from the same torch and numpy seeds, and draw one probe per
parameter per step in the same order, so the probes are identical.
"""
from __future__ import annotations

import os

os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import copy  # noqa: E402
import importlib.util  # noqa: E402
import io  # noqa: E402
import math  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from hf_optquant.optim import build_optimizer, optimizer_hparams  # noqa: E402

VOCAB, D = 256, 128


class Toy(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(VOCAB, D)
        self.up = torch.nn.Linear(D, 192, bias=False)     # weight 192 x 128
        self.down = torch.nn.Linear(192, D, bias=False)   # weight 128 x 192
        self.mix = torch.nn.Linear(D, D, bias=False)      # weight 128 x 128
        self.gain = torch.nn.Parameter(torch.ones(D))

    def loss(self, step: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(1000 + step)
        ids = torch.randint(0, VOCAB, (16, 33), generator=g)
        h = self.emb(ids[:, :-1])
        h = h + self.down(torch.tanh(self.up(h)))
        h = self.mix(h) * self.gain
        logits = h @ self.emb.weight.T
        return torch.nn.functional.cross_entropy(logits.reshape(-1, VOCAB), ids[:, 1:].reshape(-1))


def _load(path: str, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _names(model) -> dict[int, str]:
    return {id(p): n for n, p in model.named_parameters()}


def _mirror_groups(ours_opt, ours_model, other_model, keys=None) -> list[list[dict]]:
    """Per sub-optimizer of ours, its param groups with the parameters of ``other_model`` in the same places."""
    names, others = _names(ours_model), dict(other_model.named_parameters())
    out = {}
    for sub, opt in ours_opt.optimizers.items():
        groups = []
        for g in opt.param_groups:
            kept = {k: g[k] for k in (keys or ()) if k in g}
            groups.append({"params": [others[names[id(p)]] for p in g["params"]], **kept, "_group": g})
        out[sub] = groups
    return out


def _adamw(groups: list[dict]) -> torch.optim.AdamW:
    return torch.optim.AdamW([{"params": g["params"], "lr": g["_group"]["lr"], "betas": g["_group"]["betas"],
                               "eps": g["_group"]["eps"], "weight_decay": g["_group"]["weight_decay"]}
                              for g in groups])


class _Multi:
    def __init__(self, opts):
        self.opts = opts

    def zero_grad(self):
        for o in self.opts:
            o.zero_grad(set_to_none=True)

    def step(self):
        for o in self.opts:
            o.step()


# ---- one builder per optimizer: (ours, original) over two copies of the model -------------------------------

def _muon(mod, a, b, wd):
    ours = build_optimizer("muon", a, weight_decay=wd)
    m = _mirror_groups(ours, a, b)
    hid = ours.optimizers["hidden"]
    g0 = hid.param_groups[0]
    assert all(g["lr"] == g0["lr"] and g["weight_decay"] == g0["weight_decay"] for g in hid.param_groups)
    orig = _Multi([mod.SingleDeviceMuon([p for g in m["hidden"] for p in g["params"]], lr=g0["lr"],
                                        weight_decay=g0["weight_decay"], momentum=g0["momentum"]),
                   _adamw(m["side"])])
    mapping = (f"lr {g0['lr']}, momentum {g0['momentum']} (Nesterov: {g0['nesterov']}; original: always), "
               f"weight decay {g0['weight_decay']}, NS steps {g0['ns_steps']} / coefficients {g0['ns_coefficients']} "
               f"(original: fixed 5 / (3.4445, -4.7750, 2.0315)), scale rule {g0['adjust_lr_fn']} = sqrt(max(1, rows/cols)) "
               f"(original: the same); NS normalisation X/max(||X||, {g0['eps']}) vs original X/(||X|| + 1e-7); "
               "side groups: torch AdamW on both sides (ant's settings)")
    return ours, orig, mapping


def _soap(mod, a, b, wd):
    ours = build_optimizer("soap", a, weight_decay=wd)
    m = _mirror_groups(ours, a, b)
    g0 = ours.optimizers["hidden"].param_groups[0]
    groups = [{"params": g["params"], "lr": g["_group"]["lr"], "weight_decay": g["_group"]["weight_decay"]}
              for g in m["hidden"]]
    orig = mod.SOAP(groups, lr=g0["lr"], betas=g0["betas"], shampoo_beta=-1 if g0["shampoo_beta"] is None else
                    g0["shampoo_beta"], eps=g0["eps"], weight_decay=g0["weight_decay"],
                    precondition_frequency=g0["precondition_frequency"], max_precond_dim=g0["max_precondition_dim"],
                    merge_dims=g0["merge_dims"], precondition_1d=g0["precondition_1d"],
                    normalize_grads=g0["normalize_gradient"], correct_bias=g0["correct_bias"])
    mapping = (f"lr {g0['lr']} (all groups: ant's routing), betas {g0['betas']}, shampoo_beta = beta2, eps {g0['eps']}, "
               f"weight decay {g0['weight_decay']}, precondition frequency {g0['precondition_frequency']}, "
               f"max dim {g0['max_precondition_dim']}, merge_dims {g0['merge_dims']}, precondition_1d "
               f"{g0['precondition_1d']}, normalize {g0['normalize_gradient']}, bias correction {g0['correct_bias']}")
    return ours, orig, mapping


def _kron(mod, a, b, wd):
    ours = build_optimizer("psgd", a, weight_decay=wd)
    m = _mirror_groups(ours, a, b)
    g0 = ours.optimizers["hidden"].param_groups[0]
    groups = [{"params": g["params"], "lr": g["_group"]["lr"], "weight_decay": g["_group"]["weight_decay"]}
              for g in m["hidden"]]
    # The original's own schedule with our preset's numbers (1.0 for 500 steps, then exponential decay to a floor):
    # probability 1 on both sides for --steps <= 500; longer runs compare the decaying update cadence too.
    h = optimizer_hparams("psgd")
    prob = mod.precond_update_prob_schedule(max_prob=1.0, min_prob=h["update_prob_min"], decay=h["update_prob_decay"],
                                            flat_start=h["update_prob_flat_steps"])
    with contextlib.redirect_stdout(io.StringIO()):
        orig = mod.Kron(groups, lr=g0["lr"], b1=g0["momentum"], weight_decay=g0["weight_decay"],
                        preconditioner_update_probability=prob, max_size_triangular=g0["max_size_triangular"],
                        min_ndim_triangular=g0["min_ndim_triangular"], memory_save_mode=g0["memory_save_mode"],
                        momentum_into_precond_update=g0["momentum_into_precondition_update"],
                        precond_dtype=g0["precondition_dtype"])
    for g in orig.param_groups:  # precond_lr / init scale: not arguments in every version; set in the groups
        g["precond_lr"], g["precond_init_scale"] = g0["precondition_lr"], g0["precondition_init_scale"]
    mapping = (f"lr {g0['lr']} (all groups), momentum (b1) {g0['momentum']}, weight decay {g0['weight_decay']} "
               f"(decoupled form, matrices only, on both sides), update probability: the original's schedule (1.0 for "
               f"{h['update_prob_flat_steps']} steps, decay {h['update_prob_decay']}, floor {h['update_prob_min']}), max triangular {g0['max_size_triangular']}, min ndim {g0['min_ndim_triangular']}, "
               f"memory_save_mode {g0['memory_save_mode']}, precond lr {g0['precondition_lr']}, init scale "
               f"{g0['precondition_init_scale']}, momentum into the preconditioner update, float32 preconditioner; "
               f"balancing: ours with probability {getattr(ours.optimizers['hidden'], 'inner', ours.optimizers['hidden']).balance_prob} from numpy's RNG, the "
               "original 0.01 from its own random.Random (a rescaling of the factors that leaves Q^T Q unchanged)")
    return ours, _Multi([orig]), mapping


def _scion(mod, a, b, wd):
    ours = build_optimizer("scion", a, weight_decay=0.0)
    m = _mirror_groups(ours, a, b)
    lmo = {2: "Spectral", 4: "Sign"}
    groups = []
    for g in m["hidden"]:
        G = g["_group"]
        assert not G["constraint"] and not G["norm_kwargs"]
        groups.append({"params": g["params"], "lr": G["lr"], "momentum": G["momentum"], "scale": G["scale"],
                       "norm": lmo[int(G["norm_type"])], "norm_kwargs": {}, "unconstrained": True})
    orig = _Multi([mod.Scion(groups), _adamw(m["side"])])
    desc = "; ".join(f"{g['norm']} LMO lr {g['lr']} scale {g['scale']} momentum {g['momentum']}" for g in groups)
    mapping = (f"{desc}; unconstrained; weight decay 0 (the original has none: pytorch_optimizer's decoupled "
               "weight decay cannot be mapped, so this run uses 0, the paper's value); gains: torch AdamW on both sides")
    return ours, orig, mapping


BUILDERS = {"muon": _muon, "soap": _soap, "kron": _kron, "scion": _scion}


def _run(opt_pair_fn, mod, w0_model, wd, steps, seed, perturb=0.0):
    a, b = copy.deepcopy(w0_model), copy.deepcopy(w0_model)
    if perturb:
        g = torch.Generator().manual_seed(7)
        with torch.no_grad():
            for p in b.parameters():
                p.mul_(1 + perturb * torch.randn(p.shape, generator=g))
    ours, orig, mapping = opt_pair_fn(mod, a, b, wd)
    snaps = {}
    for which, (model, opt) in {"ours": (a, ours), "orig": (b, orig)}.items():
        torch.manual_seed(seed)
        np.random.seed(seed)
        for t in range(steps):
            opt.zero_grad()
            model.loss(t).backward()
            with contextlib.redirect_stdout(io.StringIO()):  # kron_torch prints its buffer sizes
                opt.step()
            if t == 0:
                snaps[which, 1] = {n: p.detach().clone() for n, p in model.named_parameters()}
        snaps[which, steps] = {n: p.detach().clone() for n, p in model.named_parameters()}
    return snaps, mapping


def _rel(snaps, w0, x, y, t):
    out = {}
    for n, w in snaps[y, t].items():
        moved = (w - w0[n]).norm().item()
        out[n] = (snaps[x, t][n] - w).norm().item() / moved if moved > 0 else float("nan")
    return out


def _ns64(g: torch.Tensor, steps: int = 5) -> torch.Tensor:
    """The quintic Newton-Schulz polynomial of Muon/Scion evaluated in float64 (the rounding-free reference)."""
    a, b, c = 3.4445, -4.7750, 2.0315
    x = g.double()
    tr = x.size(0) > x.size(1)
    x = x.T if tr else x
    x = x / (x.norm() + 1e-7)
    for _ in range(steps):
        A = x @ x.T
        x = a * x + (b * A + c * A @ A) @ x
    return x.T if tr else x


def _ns_check(mods, model) -> list[str]:
    """Each Newton-Schulz implementation on the first gradients of the hidden matrices, against float64."""
    from pytorch_optimizer.optimizer.utils.matrix import zero_power_via_newton_schulz_5

    m = copy.deepcopy(model)
    m.loss(0).backward()
    impls = {"torch.optim.Muon (ours, Muon)": lambda g: torch.optim._muon._zeropower_via_newtonschulz(
        g, (3.4445, -4.7750, 2.0315), 5, 1e-7), "pytorch_optimizer (ours, Scion)": zero_power_via_newton_schulz_5}
    if "muon" in mods:
        impls["KellerJordan muon.py"] = lambda g: mods["muon"].zeropower_via_newtonschulz5(g, 5)
    if "scion" in mods:
        impls["LIONS scion.py"] = lambda g: mods["scion"].zeropower_via_newtonschulz5(g, 5)
    rel = lambda x, y: ((x.double() - y.double()).norm() / y.double().norm()).item()  # noqa: E731
    lines = ["Newton-Schulz alone on the step-1 gradient of each hidden matrix (bf16 inside every implementation), "
             "relative difference to the same polynomial in float64:",
             "| implementation | " + " | ".join(n for n in ("up", "down", "mix")) + " |", "|---|---|---|---|"]
    for k, fn in impls.items():
        lines.append(f"| {k} | " + " | ".join(f"{rel(fn(getattr(m, n).weight.grad), _ns64(getattr(m, n).weight.grad)):.2e}"
                                             for n in ("up", "down", "mix")) + " |")
    return lines


def _step1_float64(k: str, model, wd: float) -> dict[str, torch.Tensor]:
    """The first update of Muon's / Scion's spectral matrices computed in float64 from the built groups' settings:
    what both sides should give up to the bf16 rounding of their Newton-Schulz."""
    m = copy.deepcopy(model)
    opt = build_optimizer("muon" if k == "muon" else "scion", m, weight_decay=wd if k == "muon" else 0.0)
    m.loss(0).backward()
    names, out = _names(m), {}
    for g in opt.optimizers["hidden"].param_groups:
        if k == "scion" and int(g["norm_type"]) != 2:
            continue
        for q in g["params"]:
            grad, w0 = q.grad.double(), q.detach().double()
            rows, cols = q.shape
            if k == "muon":  # buffer (1 - b) g; Nesterov g.lerp(buffer, b) = (1 - b)(1 + b) g at step 1
                b = g["momentum"]
                u = _ns64(grad * (1 - b) * ((1 + b) if g["nesterov"] else 1.0))
                out[names[id(q)]] = w0 * (1 - g["lr"] * g["weight_decay"]) - g["lr"] * math.sqrt(max(1, rows / cols)) * u
            else:  # d = 0.lerp(g, momentum); spectral LMO radius x sqrt(d_out / d_in); unconstrained
                u = _ns64(grad * g["momentum"])
                out[names[id(q)]] = w0 - g["lr"] * g["scale"] * math.sqrt(rows / cols) * u
    return out


def _f(x: float) -> str:
    return "no move" if math.isnan(x) else f"{x:.2e}"  # SOAP's first step only builds its preconditioner


def _max(xs) -> float:
    xs = [x for x in xs if not math.isnan(x)]
    return max(xs) if xs else float("nan")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for k, what in (("muon", "KellerJordan/Muon muon.py"), ("soap", "nikhilvyas/SOAP soap.py"),
                    ("kron", "evanatyourservice/kron_torch kron_torch/kron.py"), ("scion", "LIONS-EPFL/scion scion.py")):
        p.add_argument(f"--{k}", help=f"path of {what} (skipped when absent)")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--weight-decay", type=float, default=0.1, help="for Muon, SOAP, Kron (Scion: 0, see above)")
    p.add_argument("--seed", type=int, default=1234, help="torch/numpy seed of both sides (Kron's probes)")
    args = p.parse_args(argv)
    torch.manual_seed(0)
    model = Toy()
    with torch.no_grad():
        for q in (model.emb.weight, model.up.weight, model.down.weight, model.mix.weight):
            q.normal_(0, 0.02)
    w0 = {n: q.detach().clone() for n, q in model.named_parameters()}
    mods = {k: _load(getattr(args, k), f"_original_{k}") for k in BUILDERS if getattr(args, k)}
    print(f"{args.steps} steps, weight decay {args.weight_decay}; torch {torch.__version__}; "
          "difference = ||W_ours - W_orig|| / ||W_orig - W_0|| per parameter; floor = the original against itself "
          "from weights perturbed by 1e-7 relative")
    rows = []
    for k, mod in mods.items():
        snaps, mapping = _run(BUILDERS[k], mod, model, args.weight_decay, args.steps, args.seed)
        floor, _ = _run(BUILDERS[k], mod, model, args.weight_decay, args.steps, args.seed, perturb=1e-7)
        print(f"\n{k}: {mapping}")
        d1, dn = _rel(snaps, w0, "ours", "orig", 1), _rel(snaps, w0, "ours", "orig", args.steps)
        f1 = _rel({("a", t): floor["orig", t] for t in (1, args.steps)} | {("b", t): snaps["orig", t]
                  for t in (1, args.steps)}, w0, "a", "b", 1)
        fn = _rel({("a", t): floor["orig", t] for t in (1, args.steps)} | {("b", t): snaps["orig", t]
                  for t in (1, args.steps)}, w0, "a", "b", args.steps)
        print(f"| {k} parameter | after 1 | after {args.steps} | floor after 1 | floor after {args.steps} |")
        print("|---|---|---|---|---|")
        for n in d1:
            print(f"| {n} | {_f(d1[n])} | {_f(dn[n])} | {_f(f1[n])} | {_f(fn[n])} |")
        if k in ("muon", "scion"):
            pred = _step1_float64(k, model, args.weight_decay)
            rel1 = {w: {n: ((snaps[w, 1][n].double() - pred[n]).norm() / (pred[n] - w0[n].double()).norm()).item()
                        for n in pred} for w in ("ours", "orig")}
            print("step 1 against the float64 prediction (same settings, exact Newton-Schulz polynomial): "
                  + ", ".join(f"{n} ours {rel1['ours'][n]:.2e} / original {rel1['orig'][n]:.2e}" for n in pred))
        rows.append((k, _max(d1.values()), _max(dn.values()), _max(f1.values()), _max(fn.values())))
    print(f"\n| optimizer | max difference after 1 | after {args.steps} | floor after 1 | floor after {args.steps} |")
    print("|---|---|---|---|---|")
    for k, *v in rows:
        print(f"| {k} | " + " | ".join(_f(x) for x in v) + " |")
    if {"muon", "scion"} & set(mods):
        print("\n" + "\n".join(_ns_check(mods, model)))


if __name__ == "__main__":
    main()
