"""The torch engine on a GPU (run by hand on a machine with CUDA; CI has none): one prepared
script of at most 8 minutes on an H200 that measures what the design study lists
(shared/designs/gpu-engine/README.md, "What one run on a GPU machine should measure"), each
figure beside its projection so that a miss names the wrong term of the cost model.

1. Ceilings: DGEMM at 4,096 and 8,192, a 128-wide panel GEMM, copy bandwidth, cholesky_ex,
   solve_triangular and eigh at 3,072, one tiny op with and without a host sync.
2. Forward passes of two 12-layer 768/3,072 encoders (torch alone) on 64 x 128 tokens in fp32,
   TF32 and bf16.
3. Correctness: the torch engine on the device against the same engine on the CPU and against
   the C++ core (computed here, or read from a file written by --write-reference elsewhere).
4. At 3,072 + 3,072 on 8,192 samples (independent, FFN-like, related): the Gram pass on the
   device, all critical eps (time, levels, rounds, ms per round; then in 32 eps-cells, one after
   another and 8 side by side on CUDA streams), max match at 7 eps, and the engine's peak
   device memory beside nsm.match._torch_engine.working_set_bytes.

    python tools/device_engine.py [--out DIR] [--small] [--cpu] [--reference FILE]
    python tools/device_engine.py --small --cpu          # a quick run on the CPU (tiny sizes)

Writes device_engine.json to --out (default: $OUT, else the current folder) and prints it. A step
that fails is recorded and the others still run; steps that would end past the time budget are
skipped and say so.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from typing import Any

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
# The core's thresholds of the correctness cases, written by --write-reference where nsm is built.
REFERENCE = os.path.join(ROOT, "tools", "device_engine_reference.npz")

try:  # nsm built here: the core is the reference
    import nsm
    from nsm.match._torch_engine import TorchEngine, working_set_bytes
except ImportError:  # torch alone: the engine's module by its path, the reference from the file
    import importlib.util

    nsm = None  # type: ignore[assignment]
    _spec = importlib.util.spec_from_file_location(
        "nsm_torch_engine", os.path.join(ROOT, "python", "nsm", "match", "_torch_engine.py")
    )
    assert _spec is not None and _spec.loader is not None
    _module = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_module)
    TorchEngine, working_set_bytes = _module.TorchEngine, _module.working_set_bytes

BUDGET_S = 7.5 * 60
START = time.perf_counter()
F64 = torch.float64
EPS7 = [0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.7]
# Projections for one H200 (design README, "Projected on one H200").
PROJECTED = {
    "dgemm_tflops": "about 40 on large shapes",
    "panel_gemm_tflops": "about 20",
    "tiny_op_us": "about 5 per launch",
    "tiny_op_sync_us": "about 15 per host sync",
    "forward_fp32_s": "about 0.07 for both encoders",
    "forward_tf32_s": "0.010-0.015",
    "forward_bf16_s": "0.010-0.015",
    "gram_pass_s": "about 0.015 (float64, 3,072 + 3,072, 8,192 samples)",
    "thresholds_abrupt_s": "0.026-0.054 in plain torch (target <= 0.060)",
    "thresholds_gradual_s": "0.4-0.8 in plain torch (target <= 0.2 with cells or a fused round)",
    "first_state_s": "about 0.0065",
}


def left() -> float:
    return BUDGET_S - (time.perf_counter() - START)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def best_of(fn, device: torch.device, rounds: int = 3) -> float:
    fn()
    sync(device)
    best = math.inf
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return best


def ceilings(device: torch.device, small: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for n in (256, 512) if small else (4096, 8192):
        a = torch.randn(n, n, dtype=F64, device=device)
        t = best_of(lambda a=a: a @ a, device)
        out[f"dgemm_{n}"] = {"s": t, "tflops": 2 * n**3 / t / 1e12, "projected": PROJECTED["dgemm_tflops"]}
    m = 384 if small else 3072
    p = torch.randn(m, 128, dtype=F64, device=device)
    q = torch.randn(128, 4 * m, dtype=F64, device=device)
    t = best_of(lambda: p @ q, device)
    out["panel_gemm"] = {
        "s": t,
        "tflops": 2 * m * 128 * 4 * m / t / 1e12,
        "projected": PROJECTED["panel_gemm_tflops"],
    }
    out["copy"] = copy_bandwidth(device, 64 * 2**20 if small else 2**30)
    x = torch.randn(m, m, dtype=F64, device=device)
    spd = x @ x.T / m + torch.eye(m, dtype=F64, device=device)
    lower = torch.linalg.cholesky(spd)
    out["cholesky_ex"] = {"s": best_of(lambda: torch.linalg.cholesky_ex(spd), device), "n": m}
    out["solve_triangular"] = {
        "s": best_of(lambda: torch.linalg.solve_triangular(lower, x, upper=False), device),
        "n": m,
    }
    out["eigh"] = {"s": best_of(lambda: torch.linalg.eigvalsh(spd), device, rounds=1), "n": m}
    one = torch.ones(8, dtype=F64, device=device)
    reps = 200

    def tiny() -> None:
        for _ in range(reps):
            one.add_(0.0)

    def tiny_sync() -> None:
        for _ in range(reps):
            float(one.add_(0.0)[0])

    out["tiny_op_us"] = {"us": best_of(tiny, device) / reps * 1e6, "projected": PROJECTED["tiny_op_us"]}
    out["tiny_op_sync_us"] = {
        "us": best_of(tiny_sync, device) / reps * 1e6,
        "projected": PROJECTED["tiny_op_sync_us"],
    }
    return out


def copy_bandwidth(device: torch.device, nbytes: int) -> dict[str, float]:
    """One clone of ``nbytes``: read and write, so 2 nbytes moved."""
    big = torch.empty(nbytes // 8, dtype=F64, device=device)
    t = best_of(big.clone, device)
    return {"s": t, "gb_s": 2 * nbytes / t / 1e9}


def encoder(seed: int, small: bool) -> torch.nn.Module:
    torch.manual_seed(seed)
    d, ffn, layers = (64, 256, 2) if small else (768, 3072, 12)
    block = torch.nn.TransformerEncoderLayer(
        d, 12 if not small else 4, ffn, batch_first=True, activation="gelu"
    )
    return torch.nn.TransformerEncoder(block, layers, enable_nested_tensor=False).eval()


def forwards(device: torch.device, small: bool) -> dict[str, Any]:
    """Two encoders' forward passes over 64 x 128 tokens (8,192) in fp32, TF32 and bf16."""
    out: dict[str, Any] = {}
    a, b = encoder(1, small).to(device), encoder(2, small).to(device)
    d = 64 if small else 768
    x = torch.randn(8 if small else 64, 128, d, device=device)
    for mode in ("fp32", "tf32", "bf16"):
        if mode == "bf16" and device.type == "cpu" and not small:
            continue
        torch.backends.cuda.matmul.allow_tf32 = mode == "tf32"
        torch.backends.cudnn.allow_tf32 = mode == "tf32"

        def run(mode: str = mode) -> None:
            with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=mode == "bf16"):
                a(x)
                b(x)

        out[f"forward_{mode}_s"] = {"s": best_of(run, device), "projected": PROJECTED[f"forward_{mode}_s"]}
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    return out


def _gelu(a: np.ndarray) -> np.ndarray:
    return 0.5 * a * (1 + np.tanh(0.7978845608 * (a + 0.044715 * a**3)))


def layers(kind: str, d: int, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """float32 layer pairs: "independent" (nothing shared), "ffn" (GELU FFN-like: Y reads X),
    "related" (post-ReLU layers mixing a shared pool: a gradual curve)."""
    rng = np.random.default_rng(seed)
    if kind == "independent":
        return (
            np.maximum(rng.standard_normal((d, n), dtype=np.float32), 0),
            np.maximum(rng.standard_normal((d, n), dtype=np.float32), 0),
        )
    if kind == "ffn":
        h = rng.standard_normal((d, n // 4), dtype=np.float32)
        X = _gelu(h @ rng.standard_normal((n // 4, n), dtype=np.float32) / np.sqrt(n / 4)).astype(np.float32)
        Y = _gelu(X @ rng.standard_normal((n, n), dtype=np.float32) / np.sqrt(n)).astype(np.float32)
        return X, Y + 0.1 * rng.standard_normal((d, n), dtype=np.float32)
    from bench.layers import related_relu_layers

    return related_relu_layers(d, n, seed)


def device_gram(X: np.ndarray, Y: np.ndarray, device: torch.device) -> tuple[torch.Tensor, float]:
    """The float64 Gram of [X Y] on the device, and the pass's time (data already there)."""
    a = torch.from_numpy(np.hstack([X, Y])).to(device)

    def gram() -> torch.Tensor:
        a64 = a.to(F64)
        return a64.T @ a64

    t = best_of(gram, device, rounds=2)
    return gram(), t


def float64_gram(X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """The symmetric float64 Gram of [X Y] (numpy: the same matrix wherever it is computed)."""
    a = np.hstack([X, Y]).astype(np.float64)
    g = a.T @ a
    return (g + g.T) / 2


def correctness(device: torch.device, small: bool, reference: dict[str, Any]) -> dict[str, Any]:
    """The engine on the device against the same engine on the CPU and against the core."""
    out: dict[str, Any] = {}
    n = 64 if small else 512
    for kind in ("independent", "ffn", "related"):
        X, Y = layers(kind, 4 * n, n, seed=1)
        matrix = float64_gram(X, Y)
        key = f"{kind} {n}+{n}"
        core = reference.get(key)
        if core is None and nsm is not None:
            t = nsm.match_thresholds(nsm.Gram.from_matrix(matrix, n, 4 * n), engine="core")
            core = np.concatenate([t.x, t.y])
        on_dev = TorchEngine(matrix, n, 4 * n, 1e-20, device).thresholds()
        on_cpu = TorchEngine(matrix, n, 4 * n, 1e-20, "cpu").thresholds()
        if core is None:
            diff = float(np.nanmax(np.abs(on_dev - on_cpu)))
            out[key] = {"max_diff_device_cpu": diff, "core": "no reference"}
            continue
        finite = np.isfinite(core)
        out[key] = {
            "same_infinities": bool(np.array_equal(np.isinf(core), np.isinf(on_dev))),
            "max_diff_device_core": float(np.abs(on_dev[finite] - core[finite]).max()),
            "max_diff_device_cpu": float(np.abs(on_dev[finite] - on_cpu[finite]).max()),
        }
        out[key]["ok"] = bool(out[key]["same_infinities"] and out[key]["max_diff_device_core"] <= 1e-9)
    return out


def write_reference(path: str, small: bool) -> None:
    """The core's thresholds of the correctness cases, for a device machine without the core."""
    n = 64 if small else 512
    ref = {}
    for kind in ("independent", "ffn", "related"):
        X, Y = layers(kind, 4 * n, n, seed=1)
        t = nsm.match_thresholds(nsm.Gram.from_matrix(float64_gram(X, Y), n, 4 * n), engine="core")
        ref[f"{kind} {n}+{n}"] = np.concatenate([t.x, t.y])
    np.savez(path, **ref)


def engine_at_size(device: torch.device, small: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    n, d = (96, 256) if small else (3072, 8192)
    for kind in ("independent", "ffn", "related"):
        if left() < (10 if small else 90):
            out[kind] = "skipped: out of time"
            continue
        X, Y = layers(kind, d, n)
        g, t_gram = device_gram(X, Y, device)
        row: dict[str, Any] = {"gram_pass_s": t_gram, "gram_projected": PROJECTED["gram_pass_s"]}
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
            held_before = torch.cuda.memory_allocated(device)
        engine = TorchEngine(g, n, d, 1e-20, device)
        sync(device)
        t0 = time.perf_counter()
        engine._start()
        sync(device)
        row["first_state_s"] = time.perf_counter() - t0
        row["first_state_projected"] = PROJECTED["first_state_s"]
        t0 = time.perf_counter()
        t = engine.thresholds()
        sync(device)
        row["thresholds_s"] = time.perf_counter() - t0
        row.update({f"thresholds_{k}": v for k, v in engine.stats.items()})
        row["ms_per_round"] = 1e3 * row["thresholds_s"] / max(engine.stats["rounds"], 1)
        row["thresholds_projected"] = PROJECTED[
            "thresholds_gradual_s" if engine.stats["levels"] > 500 else "thresholds_abrupt_s"
        ]
        for cells, workers in ((32, 1), (32, 8)):  # eps-cells, one after another / side by side
            if left() < (5 if small else 60):
                row[f"cells_{cells}_workers_{workers}"] = "skipped: out of time"
                continue
            t0 = time.perf_counter()
            tc = engine.thresholds(cells=cells, workers=workers)
            sync(device)
            finite = np.isfinite(t)
            row[f"cells_{cells}_workers_{workers}"] = {
                "s": time.perf_counter() - t0,
                "busiest_cell_rounds": engine.stats.get("busiest_cell_rounds"),
                "cell_reruns": engine.stats.get("cell_reruns"),
                "max_diff_to_one_chain": float(np.abs(tc[finite] - t[finite]).max()) if finite.any() else 0.0,
                "projected": "about 0.14 s with 32 cells batched (gradual pair)",
            }
        t0 = time.perf_counter()
        masks = engine.max_match(EPS7)
        sync(device)
        row["max_match_7_eps_s"] = time.perf_counter() - t0
        row["max_match_rounds"] = engine.stats["rounds"]
        # The masks are the thresholds' maximum matches (a check of the run itself).
        row["max_match_equals_thresholds"] = bool(
            all(np.array_equal(masks[i], t <= e) for i, e in enumerate(EPS7))
        )
        row["similarity_at_eps"] = {str(e): float(masks[i].mean()) for i, e in enumerate(EPS7)}
        row["working_set_estimate_bytes"] = working_set_bytes(n, n)
        if device.type == "cuda":
            row["working_set_measured_bytes"] = torch.cuda.max_memory_allocated(device) - held_before
        out[kind] = row
        del g, engine
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=os.environ.get("OUT", "."), help="folder for device_engine.json")
    parser.add_argument("--small", action="store_true", help="tiny sizes (a quick check of the script)")
    parser.add_argument("--cpu", action="store_true", help="run on the CPU even where CUDA is present")
    parser.add_argument("--reference", default=REFERENCE, help="the core's thresholds (--write-reference)")
    parser.add_argument("--write-reference", help="write the core's thresholds to this .npz and stop")
    args = parser.parse_args()
    if args.write_reference:
        write_reference(args.write_reference, args.small)
        return
    device = torch.device("cpu" if args.cpu or not torch.cuda.is_available() else "cuda")
    summary: dict[str, Any] = {
        "device": torch.cuda.get_device_name(0) if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__,
        "nsm": nsm.__version__ if nsm is not None else "not built here (torch engine by path)",
        "small": args.small,
        "command": " ".join(sys.argv),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    reference = dict(np.load(args.reference)) if os.path.exists(args.reference) and not args.small else {}
    steps = (
        ("ceilings", lambda: ceilings(device, args.small)),
        ("forward_passes", lambda: forwards(device, args.small)),
        ("correctness", lambda: correctness(device, args.small, reference)),
        ("engine_3072", lambda: engine_at_size(device, args.small)),
    )
    for name, step in steps:
        if left() <= 0:
            summary[name] = "skipped: out of time"
            continue
        t0 = time.perf_counter()
        try:
            summary[name] = step()
        except Exception as exc:  # record, and run the other steps
            summary[name] = f"FAILED {type(exc).__name__}: {exc}"
        summary.setdefault("step_seconds", {})[name] = time.perf_counter() - t0
    text = json.dumps(summary, indent=1, default=str)
    print(text)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "device_engine.json"), "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
