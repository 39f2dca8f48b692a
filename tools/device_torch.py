"""The GPU path of nsm.torch, on a machine with CUDA (run by hand; CI has no GPU).

Checks that compare() on CUDA gives the Grams of activations collected on the same device by a
plain hook, for a ResNet-18 replica (in-place ReLUs, reused modules), a padded token encoder and,
when installed, timm's ResNet and ConvNeXt and a Hugging Face BERT (random weights, no download);
then times compare against the forward passes on a BERT-size encoder. Prints one JSON summary.

    python tools/device_torch.py [--out summary.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import nsm  # noqa: E402
import nsm.torch  # noqa: E402
from tests.torch_models import TokenEncoder, padded_batches, resnet18  # noqa: E402

DEV = torch.device("cuda")
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
summary: dict = {"device": torch.cuda.get_device_name(0), "checks": {}, "timings": {}}


def hand_gram(model, data, module_name, index, layout, feed):
    """The Gram of one site from a plain cloning hook (call ``index`` of the module)."""
    module = dict(model.named_modules())[module_name]
    xs = []
    seen = []
    h = module.register_forward_hook(
        lambda m, i, o: seen.append((o[0] if isinstance(o, tuple) else o).clone())
    )
    with torch.no_grad():
        for batch in data:
            seen.clear()
            feed(model, batch)
            t = seen[index]
            if layout == "nchw":
                t = t.movedim(1, -1).reshape(-1, t.shape[1])
            elif layout == "nhwc":
                t = t.reshape(-1, t.shape[-1])
            elif layout == "nlc-masked":
                t = t[batch["attention_mask"].bool()]
            xs.append(t.double().cpu().numpy())
    h.remove()
    return np.vstack(xs)


def check(name, lc, X, Y, tol=1e-9):
    """``tol``: 1e-9 where both passes run the same kernels; float32 rounding (1e-6) where the
    GPU's attention kernels may round differently from one forward pass to the next."""
    expected = nsm.Gram.from_arrays(X, Y)
    err = float(np.abs(lc.gram.matrix - expected.matrix).max() / np.abs(expected.matrix).max())
    summary["checks"][name] = {
        "rel_err": err,
        "n_samples": lc.n_samples,
        "layout": lc.layout,
        "ok": bool(err < tol and lc.n_samples == expected.n_samples),
    }


def feed_x(model, batch):
    model(batch)


def feed_dict(model, batch):
    model(**batch)


def resnet_check():
    a, b = resnet18(1, 64).to(DEV), resnet18(2, 64).to(DEV)
    g = torch.Generator().manual_seed(0)
    data = [torch.randn(64, 3, 64, 64, generator=g).to(DEV) for _ in range(4)]
    sites = [("layer1.0.bn1", 0), ("layer1.0.relu", 1), ("layer4.1.bn2", 0)]
    c = nsm.torch.compare(a, b, data, ["layer1.0.bn1", "layer1.0.relu#1", "layer4.1.bn2"], progress=False)
    for (module, index), key in zip(sites, c):
        check(
            f"resnet18 {key}",
            c[key],
            hand_gram(a, data, module, index, "nchw", feed_x),
            hand_gram(b, data, module, index, "nchw", feed_x),
        )


def mixed_check():
    """precision="mixed" on the GPU: float32 matmuls (TF32 off) into float64, close to float64."""
    a, b = resnet18(1, 64).to(DEV), resnet18(2, 64).to(DEV)
    g = torch.Generator().manual_seed(3)
    data = [torch.randn(64, 3, 64, 64, generator=g).to(DEV) for _ in range(4)]
    sites = ["layer1.0.relu#1", "layer4.1.relu#1"]
    exact = nsm.torch.compare(a, b, data, sites, progress=False, precision="float64")
    mixed = nsm.torch.compare(a, b, data, sites, progress=False, precision="mixed")
    for site in sites:
        m, e = mixed[site].gram.matrix, exact[site].gram.matrix
        err = float(np.abs(m - e).max() / np.abs(e).max())
        t_err = float(
            np.nanmax(
                np.abs(
                    np.where(
                        np.isfinite(exact[site].thresholds.x),
                        mixed[site].thresholds.x - exact[site].thresholds.x,
                        0,
                    )
                )
            )
        )
        summary["checks"][f"mixed {site}"] = {
            "gram_rel_err": err,
            "max_threshold_change": t_err,
            "ok": bool(0 < err < 1e-5),
        }


def token_check():
    a, b = TokenEncoder(1, d=64, ffn=128).to(DEV), TokenEncoder(2, d=64, ffn=128).to(DEV)
    data = [
        {k: v.to(DEV) for k, v in batch.items()} for batch in padded_batches(n_batches=8, batch=16, length=20)
    ]
    c = nsm.torch.compare(a, b, data, "encoder", progress=False)
    check(
        "token encoder, padded",
        c["encoder"],
        hand_gram(a, data, "encoder", 0, "nlc-masked", feed_dict),
        hand_gram(b, data, "encoder", 0, "nlc-masked", feed_dict),
        tol=1e-6,
    )


def timm_check():
    try:
        import timm
    except ImportError:
        summary["checks"]["timm"] = "not installed"
        return
    g = torch.Generator().manual_seed(1)
    data = [torch.randn(32, 3, 64, 64, generator=g).to(DEV) for _ in range(4)]
    for arch, site, layout in (
        ("resnet18", "layer1.0.act1", "nchw"),
        ("convnext_atto", "stages.0.blocks.0.mlp.act", "nchw"),  # conv_mlp
        ("convnext_tiny", "stages.0.blocks.0.mlp.act", "nhwc"),
    ):  # Linear MLP
        torch.manual_seed(1)
        a = timm.create_model(arch, pretrained=False).to(DEV).eval()
        torch.manual_seed(2)
        b = timm.create_model(arch, pretrained=False).to(DEV).eval()
        try:
            c = nsm.torch.compare(a, b, data, site, progress=False)
            check(
                f"timm {arch} {site}",
                c[site],
                hand_gram(a, data, site, 0, layout, feed_x),
                hand_gram(b, data, site, 0, layout, feed_x),
            )
        except Exception as exc:  # report, do not stop the other checks
            summary["checks"][f"timm {arch} {site}"] = f"{type(exc).__name__}: {exc}"


def bert_timing():
    a, b = (TokenEncoder(s, d=768, ffn=3072, layers=4).to(DEV).eval() for s in (1, 2))
    g = torch.Generator().manual_seed(0)
    data = [{"input_ids": torch.randint(1, 50, (16, 128), generator=g).to(DEV)} for _ in range(4)]
    sites = ["encoder.layers.3", "encoder.layers.3.linear1"]

    def forwards():
        with torch.no_grad():
            for x in data:
                a(**x)
                b(**x)
        torch.cuda.synchronize()

    def run(fn, rounds=3):
        fn()
        best = float("inf")
        for _ in range(rounds):
            start = time.perf_counter()
            fn()
            torch.cuda.synchronize()
            best = min(best, time.perf_counter() - start)
        return best

    f = run(forwards)
    for baseline in (False, True):
        t = run(
            lambda b_=baseline: nsm.torch.compare(a, b, data, sites, progress=False, baseline=b_), rounds=2
        )
        summary["timings"][f"BERT-size 768/3072, 8192 tokens, compare baseline={baseline} / forwards"] = t / f
    summary["timings"]["forward passes (s)"] = f


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--out")
    args = parser.parse_args()
    for step in (resnet_check, mixed_check, token_check, timm_check, bert_timing):
        try:
            step()
        except Exception as exc:
            summary["checks"][step.__name__] = f"FAILED {type(exc).__name__}: {exc}"
    text = json.dumps(summary, indent=1, default=str)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
