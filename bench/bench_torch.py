"""nsm.torch.compare on two small CNNs against the two models' forward passes alone, and its
peak memory at two dataset sizes.

Run: python -m pytest bench/bench_torch.py --benchmark-disable -s
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from bench.layers import SMALL
from bench.timing import NOTES, RATIOS, timed

torch = pytest.importorskip("torch", reason="the torch extra is not installed")

import nsm.torch  # noqa: E402

N_INPUTS = 2000 if SMALL else 10_000
BATCH = 100 if SMALL else 250

CNN_SOURCE = textwrap.dedent("""
    import torch
    from torch import nn

    def cnn(seed):
        torch.manual_seed(seed)
        return nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(32 * 7 * 7, 64), nn.ReLU(), nn.Linear(64, 10))

    def batches(n, batch=250):
        g = torch.Generator().manual_seed(0)
        for start in range(0, n, batch):
            yield torch.rand(min(batch, n - start), 1, 28, 28, generator=g)
""")
namespace: dict = {}
exec(CNN_SOURCE, namespace)  # the same models and data in this process and the memory probe
cnn, batches = namespace["cnn"], namespace["batches"]
LAYERS = ["1", "4", "8"]  # the three ReLUs


def test_compare_against_forward_passes(run):
    a, b = cnn(1), cnn(2)
    a.eval()
    b.eval()
    data = list(batches(N_INPUTS, BATCH))

    def forwards():
        with torch.no_grad():
            for x in data:
                a(x)
                b(x)

    forwards()  # warm up
    timed("forward passes of both models alone", forwards, rounds=5)
    c = run("nsm.torch.compare, 3 layer pairs", lambda: nsm.torch.compare(a, b, data, LAYERS, progress=False),
            rounds=5)
    assert c["1"].n_samples == N_INPUTS * 28 * 28
    assert c["8"].n_samples == N_INPUTS
    timed("nsm.torch.compare, 3 layer pairs, baseline=False",
          lambda: nsm.torch.compare(a, b, data, LAYERS, progress=False, baseline=False), rounds=5)
    RATIOS.append(("compare / forward passes alone", "nsm.torch.compare, 3 layer pairs",
                   "forward passes of both models alone", "<= 1.3"))
    RATIOS.append(("compare without the baseline / forward passes alone",
                   "nsm.torch.compare, 3 layer pairs, baseline=False",
                   "forward passes of both models alone", "<= 1.3"))


MEMORY_SCRIPT = CNN_SOURCE + textwrap.dedent("""
    import json, sys
    import nsm.torch

    def status(key):
        for line in open("/proc/self/status"):
            if line.startswith(key):
                return int(line.split()[1]) * 1024

    a, b = cnn(1), cnn(2)
    n, batch = int(sys.argv[1]), int(sys.argv[2])
    nsm.torch.compare(a, b, batches(3 * batch, batch), ["1", "4", "8"], progress=False)  # warm up
    open("/proc/self/clear_refs", "w").write("5")
    before = status("VmRSS:")
    nsm.torch.compare(a, b, batches(n, batch), ["1", "4", "8"], progress=False)
    print(json.dumps({"extra": status("VmHWM:") - before}))
""")


def test_peak_memory_does_not_grow_with_inputs():
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(1 << 17)}
    peaks = {}
    for n in (N_INPUTS // 5, N_INPUTS):
        out = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, str(n), str(BATCH)], capture_output=True,
                             text=True, check=True, env=env)
        peaks[n] = json.loads(out.stdout)["extra"] / 2**20
        NOTES.append(f"compare over {n} inputs (streamed in batches of {BATCH}): peak extra memory "
                     f"{peaks[n]:.1f} MiB")
    small, large = peaks[N_INPUTS // 5], peaks[N_INPUTS]
    assert large <= small * 1.25 + 8, peaks
