"""nsm.torch.compare on a ResNet-18 replica (every ReLU site) and a BERT-style encoder, against
the two models' forward passes alone, with and without the baseline; and compare's peak memory
over the bytes of the Grams it returns.

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
from tests.torch_models import TokenEncoder, resnet18  # noqa: E402

# The sizes: 1,024 inputs at 64 x 64 through a full-width ResNet-18 replica; a BERT-style
# encoder of width 256 and FFN 1024 on 64 sequences of 128 tokens (8,192 tokens).
RESNET = (
    dict(inputs=64, size=32, width=8, batch=32) if SMALL else dict(inputs=1024, size=64, width=64, batch=128)
)
BERT = (
    dict(seqs=16, length=32, width=32, ffn=64, layers=2)
    if SMALL
    else dict(seqs=64, length=128, width=256, ffn=1024, layers=4)
)


def _images():
    g = torch.Generator().manual_seed(0)
    n, b, s = RESNET["inputs"], RESNET["batch"], RESNET["size"]
    return [torch.randn(min(b, n - i), 3, s, s, generator=g) for i in range(0, n, b)]


def _tokens():
    g = torch.Generator().manual_seed(0)
    return [
        {"input_ids": torch.randint(1, 50, (8, BERT["length"]), generator=g)}
        for _ in range(BERT["seqs"] // 8)
    ]


def _bert(seed):
    return TokenEncoder(seed, d=BERT["width"], ffn=BERT["ffn"], layers=BERT["layers"]).eval()


def _bench(label, a, b, data, layers, **kw):
    def forwards():
        with torch.no_grad():
            for x in data:
                (a(**x), b(**x)) if isinstance(x, dict) else (a(x), b(x))

    forwards()  # warm up
    timed(f"{label}: forward passes of both models alone", forwards, rounds=3)
    c = timed(
        f"{label}: compare", lambda: nsm.torch.compare(a, b, data, layers, progress=False, **kw), rounds=2
    )
    timed(
        f"{label}: compare, baseline=False",
        lambda: nsm.torch.compare(a, b, data, layers, progress=False, baseline=False, **kw),
        rounds=2,
    )
    RATIOS.append(
        (
            f"{label}: compare without the baseline / forward passes",
            f"{label}: compare, baseline=False",
            f"{label}: forward passes of both models alone",
            "<= 1.5",
        )
    )
    RATIOS.append(
        (
            f"{label}: compare with the baseline / without",
            f"{label}: compare",
            f"{label}: compare, baseline=False",
            "<= 1.4",
        )
    )
    return c


@pytest.mark.filterwarnings("ignore::nsm.FewSamplesWarning")  # layer4 of the small replica
def test_resnet18_every_relu_site():
    a, b = resnet18(1, RESNET["width"]), resnet18(2, RESNET["width"])
    c = _bench("ResNet-18 replica, every ReLU site", a, b, _images(), torch.nn.ReLU)
    assert len(c) == 17
    assert c["relu"].n_samples == RESNET["inputs"] * (RESNET["size"] // 2) ** 2


def test_bert_style_encoder():
    a, b = _bert(1), _bert(2)
    sites = [
        "encoder.layers.0",
        f"encoder.layers.{BERT['layers'] - 1}",
        f"encoder.layers.{BERT['layers'] - 1}.linear1",
    ]
    c = _bench("BERT-style encoder", a, b, _tokens(), sites)
    assert c[sites[0]].n_samples == BERT["seqs"] * BERT["length"]


# The BERT-size target: BERT-base widths and depth (768 wide, FFN 3,072, 12 layers) on
# 64 sequences of 128 tokens (8,192 tokens). Sites of the last layer: its FFN (linear1's output,
# 3,072 wide: the widest activation of the model and the hard case for the Gram and the engine)
# and its output (768). Full size only: the small run keeps a tiny encoder.
BERT_SIZE = (
    dict(seqs=16, length=32, width=32, ffn=64, layers=2)
    if SMALL
    else dict(seqs=64, length=128, width=768, ffn=3072, layers=12)
)


def _rss_reset() -> int | None:
    """Resets this process's peak resident memory (Linux) and returns the current one, in bytes."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return _status("VmRSS:")
    except OSError:
        return None


def _status(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def test_bert_size_encoder():
    cfg = BERT_SIZE
    a = TokenEncoder(1, d=cfg["width"], ffn=cfg["ffn"], layers=cfg["layers"]).eval()
    b = TokenEncoder(2, d=cfg["width"], ffn=cfg["ffn"], layers=cfg["layers"]).eval()
    g = torch.Generator().manual_seed(0)
    data = [
        {"input_ids": torch.randint(1, 50, (8, cfg["length"]), generator=g)} for _ in range(cfg["seqs"] // 8)
    ]
    last = cfg["layers"] - 1
    sites = [f"encoder.layers.{last}.linear1", f"encoder.layers.{last}"]
    label = f"BERT-size encoder ({cfg['width']} / {cfg['ffn']}, {cfg['layers']} layers)"

    def forwards():
        with torch.no_grad():
            for x in data:
                a(**x), b(**x)

    forwards()  # warm up
    timed(f"{label}: forward passes of both models alone", forwards)
    before = _rss_reset()
    c = timed(f"{label}: compare", lambda: nsm.torch.compare(a, b, data, sites, progress=False))
    if before is not None:
        extra = _status("VmHWM:") - before
        grams = sum(x.nbytes for s in sites for x in (c[s].gram.matrix, c[s].baseline_gram.matrix))
        NOTES.append(
            f"{label}, compare of {sites}: peak extra memory {extra / 2**20:.0f} MiB "
            f"= {extra / grams:.2f}x the Grams it returns"
        )
    RATIOS.append(
        (
            f"{label}: compare (default precision, with the baseline) / forward passes",
            f"{label}: compare",
            f"{label}: forward passes of both models alone",
            "<= 5",
        )
    )
    n_tokens = cfg["seqs"] * cfg["length"]
    assert c[sites[0]].n_samples == n_tokens
    assert c[sites[0]].gram.n_x == c[sites[0]].gram.n_y == cfg["ffn"]


MEMORY_SCRIPT = textwrap.dedent("""
    import json, sys
    import torch
    import nsm.torch

    def status(key):
        for line in open("/proc/self/status"):
            if line.startswith(key):
                return int(line.split()[1]) * 1024

    width, n, baseline = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1"
    torch.manual_seed(0)
    a = torch.nn.Sequential(torch.nn.Linear(64, width), torch.nn.ReLU())
    b = torch.nn.Sequential(torch.nn.Linear(64, width), torch.nn.ReLU())
    data = [torch.randn(500, 64) for _ in range(n // 500)]
    nsm.torch.compare(a, b, data[:2], "1", progress=False, baseline=baseline)  # warm up
    open("/proc/self/clear_refs", "w").write("5")
    before = status("VmRSS:")
    c = nsm.torch.compare(a, b, data, "1", progress=False, baseline=baseline)
    grams = sum(g.matrix.nbytes for g in (c["1"].gram, c["1"].baseline_gram) if g is not None)
    print(json.dumps({"extra": status("VmHWM:") - before, "grams": grams}))
""")


@pytest.mark.parametrize("baseline", [True, False])
def test_peak_memory_over_the_grams(baseline):
    width, n = (256, 2000) if SMALL else (1024, 6000)
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(1 << 17)}
    out = subprocess.run(
        [sys.executable, "-c", MEMORY_SCRIPT, str(width), str(n), str(int(baseline))],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    got = json.loads(out.stdout)
    ratio = got["extra"] / got["grams"]
    NOTES.append(
        f"compare of two Linear(64->{width}) layers on {n} samples, baseline={baseline}: "
        f"peak extra memory {got['extra'] / 2**20:.1f} MiB = {ratio:.2f}x the Grams it returns "
        "(target <= 3)"
    )
    assert ratio < 6, got
