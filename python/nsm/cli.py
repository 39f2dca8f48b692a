"""The ``nsm`` command line: ``nsm demo``, ``nsm match``, ``nsm report``."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from . import __version__, _diagnostics
from ._files import atomic_write
from ._validation import DEFAULT_PRECISION, PRECISIONS, single_eps
from .gram import Gram
from .starved import FEW_SAMPLES_RATIO, few_samples


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
                        raise CommandError(
                            f"{which}: {path} holds {len(names)} arrays ({', '.join(names)}); "
                            f"pick one with --key-{which.lower()}"
                        )
                    key = names[0]
                if key not in names:
                    raise CommandError(f"{which}: {path} has no array {key!r} (it has {', '.join(names)})")
                return archive[key]
        if suffix == ".pt":
            try:
                import torch
            except ImportError as exc:
                raise CommandError(
                    f"{which}: reading .pt files needs torch (pip install 'neuron-subspace-match[torch]')"
                ) from exc
            obj = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(obj, dict):
                if key is None or key not in obj:
                    keys = ", ".join(map(str, obj))
                    raise CommandError(
                        f"{which}: {path} holds a dict; pick a tensor with "
                        f"--key-{which.lower()} (keys: {keys})"
                    )
                obj = obj[key]
            if not isinstance(obj, torch.Tensor):
                raise CommandError(f"{which}: {path} does not hold a tensor")
            return obj
    except CommandError:
        raise
    except Exception as exc:  # unreadable or corrupt files
        raise CommandError(f"{which}: cannot read {path}: {exc}") from exc
    raise CommandError(f"{which}: {path}: expected a .npy, .npz or .pt file")


def _as_files(message: str) -> str:
    """An nsm message about arrays X and Y, about the files A and B the user named."""
    return re.sub(r"\b[XY]\b", lambda m: "A" if m.group() == "X" else "B", message)


def _same_file(a: str, b: str) -> bool:
    return os.path.exists(a) and os.path.exists(b) and os.path.samefile(a, b)


def _writable_file(path: str, force: bool, what: str) -> None:
    """Fail now, before any work, if ``path`` cannot be written or would be overwritten."""
    if os.path.islink(path):
        raise CommandError(
            f"{what}: {path} is a symbolic link; nsm does not write through links: give the "
            "path of a regular file, or remove the link"
        )
    if os.path.isdir(path):
        raise CommandError(f"{what}: {path} is a folder; give a file name")
    if os.path.exists(path) and not force:
        raise CommandError(f"{what}: {path} exists; pass --force to overwrite it")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise CommandError(f"{what}: no such folder: {folder}")
    if not os.access(folder, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        raise CommandError(f"{what}: cannot write {path}: permission denied")


def _writable_folder(out: str, what: str) -> None:
    """Create ``out`` if needed, and fail now if it is a file or cannot be written."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise CommandError(f"{what}: {out} is a file, not a folder")
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as exc:
        raise CommandError(f"{what}: cannot create the folder {out}: {exc.strerror or exc}") from exc
    if not os.access(out, os.W_OK | os.X_OK):
        raise CommandError(f"{what}: cannot write into {out}: permission denied")


def _check_report_folder(
    out: str, force: bool, source: str | None = None, files: tuple[str, ...] | None = None
) -> None:
    """Refuse to overwrite a report in ``out`` unless asked; ``source`` (a report.json being
    redrawn in place) may be replaced by its own figures."""
    from .plot.report import REPORT_FILES

    names = REPORT_FILES if files is None else files
    existing = [f for f in names if os.path.lexists(os.path.join(out, f))]
    in_place = source is not None and _same_file(source, os.path.join(out, "report.json"))
    if existing and not force and not in_place:
        raise CommandError(
            f"{out} already holds a report ({', '.join(existing)}); pass --force to "
            "overwrite it, or --out to choose another folder"
        )
    _writable_folder(out, "--out")


def _cmd_match(args: argparse.Namespace) -> int:
    from . import max_match

    if args.json:
        for source in (args.a, args.b):
            if _same_file(source, args.json):
                raise CommandError(f"--json: {args.json} is an input; choose another file")
        _writable_file(args.json, args.force, "--json")
    X = _load_array(args.a, args.key_a, "A")
    Y = _load_array(args.b, args.key_b, "B")
    try:
        gram = Gram.from_arrays(X, Y, precision=args.precision)
        results = max_match(gram, list(args.eps), count_dead=not args.exclude_dead, centered=args.centered)
    except (ValueError, TypeError) as exc:  # what is wrong with the files' arrays
        raise CommandError(_as_files(str(exc))) from exc
    assert isinstance(results, list)  # a list of eps gives a list of results
    which = " (centred match)" if args.centered else ""
    for r in results:
        print(
            f"eps={r.eps:g}: A {len(r.x)}/{r.n_x} and B {len(r.y)}/{r.n_y} neurons matched, "
            f"similarity {r.similarity:.4f}{which} (dead {len(r.dead_x)}+{len(r.dead_y)}, "
            f"{r.n_samples} samples)"
        )
    if few_samples(gram.n_samples, gram.n_x, gram.n_y):
        print(
            f"note: starved: {gram.n_samples / gram.n:.2g} samples per neuron, under "
            f"{FEW_SAMPLES_RATIO:g}: chance lowers every critical eps, so the similarity is "
            "inflated (docs/method.md, 'Starved layers')"
        )
    if args.json:
        out = [
            {
                "eps": r.eps,
                "x": r.x.tolist(),
                "y": r.y.tolist(),
                "similarity": r.similarity,
                "dead_x": r.dead_x.tolist(),
                "dead_y": r.dead_y.tolist(),
                "n_samples": r.n_samples,
                "n_x": r.n_x,
                "n_y": r.n_y,
                "centered": r.centered,
                "few_samples": few_samples(r.n_samples, r.n_x, r.n_y),
            }
            for r in results
        ]
        try:
            with atomic_write(args.json) as f:
                json.dump(out, f, indent=1)
        except OSError as exc:
            raise CommandError(f"cannot write {args.json}: {exc.strerror}") from exc
        print(f"wrote {args.json}")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from .plot.report import write_report
    from .results import Comparison

    if not os.path.isfile(args.report):
        raise CommandError(f"no such file: {args.report}")
    if _saved_format(args.report) == "nsm-cross-comparison":
        return _report_cross(args)
    try:
        comparison = Comparison.load(args.report)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CommandError(f"cannot read {args.report}: {exc}") from exc
    out = args.out or os.path.dirname(os.path.abspath(args.report))
    _check_report_folder(out, args.force, source=args.report)
    in_place = _same_file(args.report, os.path.join(out, "report.json"))
    try:  # a report redrawn in place keeps its JSON as it is
        paths = write_report(comparison, out, write_json=not in_place)
    except ImportError as exc:  # matplotlib missing
        raise CommandError(str(exc)) from exc
    print(comparison.table())
    print(f"wrote {', '.join(paths)}")
    return 0


def _saved_format(path: str) -> Any:
    """The "format" field of a saved result (None when unreadable: the loader then says why)."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f).get("format")
    except (OSError, ValueError, AttributeError):
        return None


def _report_cross(args: argparse.Namespace) -> int:
    from .plot.heatmap import write_cross_report
    from .results import CrossComparison

    try:
        cross = CrossComparison.load(args.report)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CommandError(f"cannot read {args.report}: {exc}") from exc
    out = args.out or os.path.dirname(os.path.abspath(args.report))
    # write_cross_report rewrites cross.json too, so even the input's own folder needs --force.
    existing = (
        sorted(
            f
            for f in os.listdir(out)
            if f in ("cross.json", "cross.csv") or f.startswith("heatmap_") and f.endswith(".png")
        )
        if os.path.isdir(out)
        else []
    )
    if existing and not args.force:
        raise CommandError(
            f"{out} already holds a cross report ({', '.join(existing[:3])}"
            f"{', ...' if len(existing) > 3 else ''}); pass --out to draw it "
            "elsewhere, or --force to overwrite it"
        )
    _writable_folder(out, "--out")
    paths = write_cross_report(cross, out)
    print(f"{cross}: wrote {', '.join(paths)}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .plot.report import DEMO_FILES

    _check_report_folder(args.out, args.force, files=DEMO_FILES)
    try:
        from .demo import run_demo
    except ImportError as exc:  # torch or scikit-learn missing
        raise CommandError(
            f"the demo needs the torch extra (pip install 'neuron-subspace-match[torch]'): {exc}"
        ) from exc
    run_demo(out_dir=args.out, quick=args.quick, progress=not args.no_progress)
    return 0


def _eps_value(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    try:
        return single_eps(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"eps must be in [0, 1], got {text}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nsm",
        description="Neuron activation subspace match: do two networks learn the same representation?",
    )
    parser.add_argument("--version", action="version", version=f"nsm {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="train two CNNs on digits and compare them layer by layer")
    demo.add_argument("--out", default="nsm-report", help="report folder (default: nsm-report)")
    demo.add_argument("--quick", action="store_true", help="a smoke run of a few seconds")
    demo.add_argument("--no-progress", action="store_true", help="no progress bars")
    demo.add_argument("--force", action="store_true", help="overwrite a report already in --out")
    demo.set_defaults(run=_cmd_demo)

    match = sub.add_parser("match", help="maximum match of two saved activation arrays")
    match.add_argument("a", help="activations of layer A: .npy, .npz or .pt, shape (samples, neurons)")
    match.add_argument("b", help="activations of layer B, on the same samples")
    match.add_argument(
        "--eps",
        type=_eps_value,
        nargs="+",
        default=[0.1, 0.2, 0.3, 0.4, 0.5],
        help="relative errors in [0, 1] (default: 0.1 0.2 0.3 0.4 0.5)",
    )
    match.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=DEFAULT_PRECISION,
        help="how float32 activations are multiplied into the float64 Gram "
        f"(default: {DEFAULT_PRECISION}; see nsm.Gram)",
    )
    match.add_argument("--json", help="also write the matched neurons to this JSON file")
    match.add_argument("--force", action="store_true", help="overwrite the --json file if it exists")
    match.add_argument("--key-a", help="array name in A's .npz (or key in A's .pt dict)")
    match.add_argument("--key-b", help="array name in B's .npz (or key in B's .pt dict)")
    match.add_argument(
        "--exclude-dead", action="store_true", help="leave dead neurons out of the similarity's denominator"
    )
    match.add_argument(
        "--centered",
        action="store_true",
        help="the centred match: each neuron's mean over the samples removed first (constant neurons: dead)",
    )
    match.set_defaults(run=_cmd_match)

    report = sub.add_parser("report", help="redraw the figures of a saved report.json")
    report.add_argument(
        "report",
        help="a report.json written by nsm demo or Comparison.save, or a "
        "CrossComparison.save JSON (drawn as heatmaps)",
    )
    report.add_argument("--out", help="folder for the figures (default: the report's folder)")
    report.add_argument("--force", action="store_true", help="overwrite another report already in --out")
    report.set_defaults(run=_cmd_report)
    return parser


def _print_warning(message: str, category: type[Warning]) -> None:
    """nsm's warnings on the command line: one line each, without a source line."""
    print(f"nsm: warning: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with _diagnostics.collect(emit=_print_warning):
        try:
            return args.run(args)
        except CommandError as exc:  # the user's input; anything else keeps its traceback
            print(f"nsm: error: {exc}", file=sys.stderr)
        except KeyboardInterrupt:
            print("nsm: interrupted", file=sys.stderr)
            return 130
    return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
