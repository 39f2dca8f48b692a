"""The ``nsm`` command line: ``nsm demo``, ``nsm match``, ``nsm report``."""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from . import __version__


class CommandError(Exception):
    """A problem to report in one line, without a traceback."""


def _load_array(path: str, key: str | None, which: str) -> Any:
    """Activations from .npy (memory-mapped), .npz (one array, or `key`) or .pt (torch)."""
    if not os.path.exists(path):
        raise CommandError(f"{which}: no such file: {path}")
    suffix = os.path.splitext(path)[1].lower()
    try:
        if suffix == ".npy":
            return np.load(path, mmap_mode="r", allow_pickle=False)
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                names = list(archive.keys())
                if key is None:
                    if len(names) != 1:
                        raise CommandError(f"{which}: {path} holds {len(names)} arrays ({', '.join(names)}); "
                                           f"pick one with --key-{which.lower()}")
                    key = names[0]
                if key not in names:
                    raise CommandError(f"{which}: {path} has no array {key!r} (it has {', '.join(names)})")
                return archive[key]
        if suffix == ".pt":
            try:
                import torch
            except ImportError as exc:
                raise CommandError(f"{which}: reading .pt files needs torch "
                                   "(pip install 'neuron-subspace-match[torch]')") from exc
            obj = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(obj, dict):
                if key is None or key not in obj:
                    keys = ", ".join(map(str, obj))
                    raise CommandError(f"{which}: {path} holds a dict; pick a tensor with "
                                       f"--key-{which.lower()} (keys: {keys})")
                obj = obj[key]
            if not isinstance(obj, torch.Tensor):
                raise CommandError(f"{which}: {path} does not hold a tensor")
            return obj
    except CommandError:
        raise
    except Exception as exc:  # unreadable or corrupt files
        raise CommandError(f"{which}: cannot read {path}: {exc}") from exc
    raise CommandError(f"{which}: {path}: expected a .npy, .npz or .pt file")


def _cmd_match(args: argparse.Namespace) -> int:
    from . import max_match

    X = _load_array(args.a, args.key_a, "A")
    Y = _load_array(args.b, args.key_b, "B")
    results = max_match(X, Y, list(args.eps), count_dead=not args.exclude_dead)
    assert isinstance(results, list)  # a list of eps gives a list of results
    for r in results:
        print(f"eps={r.eps:g}: A {len(r.x)}/{r.n_x} and B {len(r.y)}/{r.n_y} neurons matched, "
              f"similarity {r.similarity:.4f} (dead {len(r.dead_x)}+{len(r.dead_y)}, "
              f"{r.n_samples} samples)")
    if args.json:
        out = [{"eps": r.eps, "x": r.x.tolist(), "y": r.y.tolist(), "similarity": r.similarity,
                "dead_x": r.dead_x.tolist(), "dead_y": r.dead_y.tolist(), "n_samples": r.n_samples,
                "n_x": r.n_x, "n_y": r.n_y} for r in results]
        try:
            with open(args.json, "w", encoding="utf-8") as f:
                json.dump(out, f, indent=1)
        except OSError as exc:
            raise CommandError(f"cannot write {args.json}: {exc.strerror}") from exc
        print(f"wrote {args.json}")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from .comparison import Comparison
    from .report import write_report

    if not os.path.exists(args.report):
        raise CommandError(f"no such file: {args.report}")
    try:
        comparison = Comparison.load(args.report)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CommandError(f"cannot read {args.report}: {exc}") from exc
    out = args.out or os.path.dirname(os.path.abspath(args.report))
    paths = write_report(comparison, out)
    print(comparison.table())
    print(f"wrote {', '.join(paths)}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(out_dir=args.out, quick=args.quick, progress=not args.no_progress)
    return 0


def _eps_value(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"eps must be in [0, 1], got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nsm", description="Neuron activation subspace match: do two networks learn the same "
        "representation?")
    parser.add_argument("--version", action="version", version=f"nsm {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="train two CNNs on digits and compare them layer by layer")
    demo.add_argument("--out", default="nsm-report", help="report folder (default: nsm-report)")
    demo.add_argument("--quick", action="store_true", help="a smoke run of a few seconds")
    demo.add_argument("--no-progress", action="store_true", help="no progress bars")
    demo.set_defaults(run=_cmd_demo)

    match = sub.add_parser("match", help="maximum match of two saved activation arrays")
    match.add_argument("a", help="activations of layer A: .npy, .npz or .pt, shape (samples, neurons)")
    match.add_argument("b", help="activations of layer B, on the same samples")
    match.add_argument("--eps", type=_eps_value, nargs="+", default=[0.1, 0.2, 0.3, 0.4, 0.5],
                       help="relative errors in [0, 1] (default: 0.1 0.2 0.3 0.4 0.5)")
    match.add_argument("--json", help="also write the matched neurons to this JSON file")
    match.add_argument("--key-a", help="array name in A's .npz (or key in A's .pt dict)")
    match.add_argument("--key-b", help="array name in B's .npz (or key in B's .pt dict)")
    match.add_argument("--exclude-dead", action="store_true",
                       help="leave dead neurons out of the similarity's denominator")
    match.set_defaults(run=_cmd_match)

    report = sub.add_parser("report", help="redraw the figures of a saved report.json")
    report.add_argument("report", help="a report.json written by nsm demo or Comparison.save")
    report.add_argument("--out", help="folder for the figures (default: the report's folder)")
    report.set_defaults(run=_cmd_report)
    return parser


def _print_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                   file: Any = None, line: str | None = None) -> None:
    print(f"nsm: warning: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with warnings.catch_warnings():
        warnings.showwarning = _print_warning
        try:
            return args.run(args)
        except (CommandError, ValueError, TypeError, ImportError) as exc:
            print(f"nsm: error: {exc}", file=sys.stderr)
        except KeyboardInterrupt:
            print("nsm: interrupted", file=sys.stderr)
            return 130
    return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
