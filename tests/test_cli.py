"""The nsm command line: demo, match, report; one-line errors and non-zero exits on bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from nsm.cli import main
from tests.cases import related_layers

FIGURES = ["curves.png", "similarity.png", "thresholds.png"]


def run_cli(*args, cwd=None):
    """The real console entry point in a subprocess: exit code, stdout, stderr."""
    code = "import sys; from nsm.cli import main; sys.exit(main(sys.argv[1:]))"
    out = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "MPLBACKEND": "Agg"},
    )
    return out.returncode, out.stdout, out.stderr


@pytest.fixture
def saved_layers(tmp_path, rng):
    X, Y = related_layers(rng, 500, 12, 10)
    np.save(tmp_path / "a.npy", X)
    np.savez(tmp_path / "b.npz", acts=Y.astype(np.float32), other=np.zeros(3))
    return X, Y, tmp_path


def test_match_prints_summary_and_writes_json(saved_layers):
    X, Y, tmp = saved_layers
    code, out, err = run_cli(
        "match",
        str(tmp / "a.npy"),
        str(tmp / "b.npz"),
        "--key-b",
        "acts",
        "--eps",
        "0.3",
        "0.6",
        "--json",
        str(tmp / "m.json"),
    )
    assert code == 0, err
    assert "eps=0.3: A " in out and "eps=0.6: A " in out
    saved = json.loads((tmp / "m.json").read_text())
    import nsm

    for item in saved:
        expected = nsm.max_match(X, Y.astype(np.float32), item["eps"])
        assert item["x"] == expected.x.tolist() and item["y"] == expected.y.tolist()
        assert item["similarity"] == pytest.approx(expected.similarity)


def test_match_reads_pt_files(saved_layers):
    torch = pytest.importorskip("torch", reason="the torch extra is not installed")
    X, Y, tmp = saved_layers
    torch.save(torch.from_numpy(X), tmp / "a.pt")
    torch.save({"h": torch.from_numpy(Y)}, tmp / "b.pt")
    code, out, err = run_cli("match", str(tmp / "a.pt"), str(tmp / "b.pt"), "--key-b", "h", "--eps", "0.5")
    assert code == 0, err
    assert "eps=0.5" in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["match", "missing.npy", "b.npz"], "nsm: error: A: no such file: missing.npy"),
        (["match", "a.npy", "b.npz"], "nsm: error: B: "),  # two arrays and no --key-b
        (["match", "a.npy", "b.npz", "--key-b", "nope"], "has no array 'nope'"),
        (["match", "a.npy", "short.npy"], "nsm: error: A has 500 samples but B has 100"),
        (["match", "a.npy", "nan.npy"], "nsm: error: B contains NaN or Inf (first at row 3, column 1)"),
        (["match", "a.npy", "a.npy", "--json", "/proc/nsm/x.json"], "--json: no such folder: /proc/nsm"),
        (["match", "a.npy", "a.npy", "--json", "."], "--json: . is a folder"),
        (["match", "a.npy", "a.npy", "--json", "a.npy"], "--json: a.npy is an input"),
        (["match", "a.npy", "a.npy", "--json", "a.txt"], "--json: a.txt exists; pass --force"),
        (["match", "a.npy", "a.txt"], "expected a .npy, .npz or .pt file"),
        (["report", "missing.json"], "nsm: error: no such file: missing.json"),
        (["report", "bad.json"], "nsm: error: cannot read bad.json"),
    ],
)
def test_bad_input_gives_one_line_and_exit_code(saved_layers, args, message):
    _, _, tmp = saved_layers
    np.save(tmp / "short.npy", np.ones((100, 3)))
    nan = np.ones((500, 3))
    nan[3, 1] = np.nan
    np.save(tmp / "nan.npy", nan)
    (tmp / "a.txt").write_text("1 2 3")
    (tmp / "bad.json").write_text('{"format": "something else"}')
    code, out, err = run_cli(*args, cwd=tmp)
    assert code != 0
    assert message in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_bad_eps_is_a_usage_error(saved_layers):
    _, _, tmp = saved_layers
    code, _, err = run_cli("match", "a.npy", "a.npy", "--eps", "1.5", cwd=tmp)
    assert code == 2 and "eps must be in [0, 1]" in err


def test_few_samples_warning_is_one_line(tmp_path, rng):
    np.save(tmp_path / "a.npy", rng.random((5, 4)))
    np.save(tmp_path / "b.npy", rng.random((5, 4)))
    code, out, err = run_cli("match", "a.npy", "b.npy", "--eps", "0.1", cwd=tmp_path)
    assert code == 0
    assert err.startswith("nsm: warning: 5 samples for 4 + 4 neurons")


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """One `nsm demo --quick` per test session (training is most of the suite's time): its
    exit code, printed output and report folder."""
    for module in ("torch", "sklearn", "matplotlib"):
        pytest.importorskip(module, reason="the demo extra is not installed")
    out_dir = tmp_path_factory.mktemp("demo") / "r"
    code, out, err = run_cli("demo", "--quick", "--no-progress", "--out", str(out_dir))
    assert code == 0, err
    return out, out_dir


def test_demo_quick_then_report_round_trip(demo_run, tmp_path):
    out, report_dir = demo_run
    assert "held-out accuracy" in out and "relu2" in out
    for name in ["report.json"] + FIGURES:
        assert (report_dir / name).stat().st_size > 0
    report = json.loads((report_dir / "report.json").read_text())
    assert [layer["name"] for layer in report["layers"]] == ["relu1", "relu2", "relu3"]
    # Redraw elsewhere from the JSON alone; the table printed again is the demo's table.
    code, out2, err = run_cli("report", str(report_dir / "report.json"), "--out", str(tmp_path / "again"))
    assert code == 0, err
    for name in FIGURES:
        assert (tmp_path / "again" / name).stat().st_size > 0
    table = [line for line in out.splitlines() if line.startswith(("layer", "relu"))]
    assert table == [line for line in out2.splitlines() if line.startswith(("layer", "relu"))]


def test_demo_is_reproducible(demo_run, tmp_path):
    _, report_dir = demo_run
    code, _, err = run_cli("demo", "--quick", "--no-progress", "--out", str(tmp_path / "b"))
    assert code == 0, err
    ra = json.loads((report_dir / "report.json").read_text())
    rb = json.loads((tmp_path / "b" / "report.json").read_text())
    assert ra == rb


def test_main_in_process_and_version(capsys, saved_layers):
    _, _, tmp = saved_layers
    assert main(["match", str(tmp / "a.npy"), str(tmp / "a.npy"), "--eps", "0.0"]) == 0
    assert "similarity 1.0000" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0


def test_report_redraws_without_torch(demo_run, tmp_path):
    _, report_dir = demo_run
    args = ["report", str(report_dir / "report.json"), "--out", str(tmp_path / "x")]
    code = f"import sys; sys.modules['torch'] = None\nfrom nsm.cli import main\nsys.exit(main({args!r}))\n"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "MPLBACKEND": "Agg"}
    )
    assert out.returncode == 0, out.stderr
    assert all((tmp_path / "x" / name).stat().st_size > 0 for name in FIGURES)


def _report_dict(**changes):
    thresholds = {
        "x": [0.1, 0.5, None],
        "y": [0.2, 0.3],
        "dead_x": [2],
        "dead_y": [],
        "n_samples": 100,
        "count_dead": True,
    }
    layer = {"name": "fc", "thresholds": thresholds, "baseline_thresholds": None}
    d = {"format": "nsm-comparison", "version": 1, "eps": [0.1, 0.5], "layers": [layer]}
    for key, value in changes.items():
        target = d
        *path, last = key.split(".")
        for p in path:
            target = target[int(p)] if isinstance(target, list) else target[p]
        target[last] = value
    return d


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"eps": []}, "eps must be a non-empty list"),  # was ZeroDivisionError
        ({"layers.0.name": ["a"]}, "name must be a layer name or a [name_a, name_b] pair"),  # IndexError
        ({"layers.0.thresholds.dead_x": [7]}, "dead_x must list neuron indices in [0, 3)"),
        ({"layers.0.thresholds.n_samples": -5}, "n_samples must be an int >= 1"),
        ({"layers.0.thresholds.x": [0.1, float("nan"), None]}, "holds nan"),
        ({"layers.0.thresholds.x": [0.1, 3.0, None]}, "holds 3.0"),
    ],
)
def test_malformed_reports_are_one_line_errors(tmp_path, changes, message):
    (tmp_path / "r.json").write_text(json.dumps(_report_dict(**changes)))
    code, out, err = run_cli("report", "r.json", "--out", "figs", cwd=tmp_path)
    assert code == 1 and message in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_duplicate_layers_are_refused(tmp_path):
    d = _report_dict()
    d["layers"].append(d["layers"][0])
    (tmp_path / "r.json").write_text(json.dumps(d))
    code, _, err = run_cli("report", "r.json", "--out", "figs", cwd=tmp_path)
    assert code == 1 and "appears twice" in err


def test_report_never_overwrites_another_report(tmp_path):
    # `nsm report dir/other.json` used to replace dir/report.json.
    pytest.importorskip("matplotlib", reason="the torch extra is not installed")
    (tmp_path / "report.json").write_text(json.dumps(_report_dict()))
    other = _report_dict(**{"eps": [0.3]})
    (tmp_path / "other.json").write_text(json.dumps(other))
    before = (tmp_path / "report.json").read_text()
    code, _, err = run_cli("report", "other.json", cwd=tmp_path)
    assert code == 1 and "already holds a report (report.json); pass --force" in err
    assert (tmp_path / "report.json").read_text() == before
    assert not (tmp_path / "curves.png").exists()
    # Redrawing a report in its own folder keeps its JSON and draws the figures.
    code, out, err = run_cli("report", "report.json", cwd=tmp_path)
    assert code == 0, err
    assert (tmp_path / "report.json").read_text() == before
    assert all((tmp_path / f).stat().st_size > 0 for f in FIGURES)
    # Asked to, it replaces it.
    code, out, err = run_cli("report", "other.json", "--force", cwd=tmp_path)
    assert code == 0, err
    assert json.loads((tmp_path / "report.json").read_text())["eps"] == [0.3]


@pytest.mark.parametrize(
    "out, message",
    [
        ("/proc/nsm-x", "--out: cannot create the folder /proc/nsm-x"),
        ("a_file", "--out: a_file is a file, not a folder"),
    ],
)
def test_unwritable_out_fails_before_any_work(tmp_path, out, message):
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "r.json").write_text(json.dumps(_report_dict()))
    for args in (["demo", "--quick", "--out", out], ["report", "r.json", "--out", out]):
        code, _, err = run_cli(*args, cwd=tmp_path)
        assert code == 1 and message in err, err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_demo_refuses_to_overwrite_a_report(tmp_path):
    (tmp_path / "report.json").write_text("{}")
    code, _, err = run_cli("demo", "--quick", "--out", str(tmp_path))
    assert code == 1 and "already holds a report" in err


@pytest.mark.parametrize("name", ["curves_centred.png", "heatmap_match_auc.png", "heatmap_linear_cka.png"])
def test_demo_refuses_to_overwrite_any_file_it_writes(tmp_path, name):
    # Only the older file list was checked: these three were overwritten without --force.
    (tmp_path / name).write_bytes(b"mine")
    code, _, err = run_cli("demo", "--quick", "--out", str(tmp_path))
    assert code == 1 and "already holds a report" in err and name in err
    assert (tmp_path / name).read_bytes() == b"mine"


def test_internal_errors_keep_their_traceback(monkeypatch, tmp_path):
    # A ValueError from nsm's own code (here: drawing) is a bug to report, not a one-line
    # message: it used to be printed as "nsm: error: ..." like bad input.
    import nsm.plot.report

    def broken(*args, **kwargs):
        raise ValueError("a bug")

    monkeypatch.setattr(nsm.plot.report, "write_report", broken)
    (tmp_path / "r.json").write_text(json.dumps(_report_dict()))
    with pytest.raises(ValueError, match="a bug"):
        main(["report", str(tmp_path / "r.json"), "--out", str(tmp_path / "figs")])


def test_cross_report_never_overwrites_without_force(tmp_path, rng):
    pytest.importorskip("matplotlib", reason="the torch extra is not installed")
    import nsm
    from nsm.results import CrossComparison

    X = rng.random((300, 4))
    cross = CrossComparison(["a"], ["b"], {("a", "b"): nsm.Gram.from_arrays(X, X)}, eps=[0.3])
    cross.save(tmp_path / "c.json")
    assert main(["report", str(tmp_path / "c.json"), "--out", str(tmp_path / "out")]) == 0
    before = (tmp_path / "out" / "cross.json").read_bytes()
    assert main(["report", str(tmp_path / "c.json"), "--out", str(tmp_path / "out")]) == 1
    assert (tmp_path / "out" / "cross.json").read_bytes() == before
    assert main(["report", str(tmp_path / "c.json"), "--out", str(tmp_path / "out"), "--force"]) == 0


def test_python_m_nsm_is_the_cli_and_reports_the_installed_version():
    from importlib.metadata import version

    import nsm

    out = subprocess.run([sys.executable, "-m", "nsm", "--version"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"nsm {version('neuron-subspace-match')}"
    assert nsm.__version__ == version("neuron-subspace-match")


def test_match_centered_and_starved_note(saved_layers, capsys):
    X, Y, tmp = saved_layers
    out_json = tmp / "c.json"
    args = ["match", str(tmp / "a.npy"), str(tmp / "b.npz"), "--key-b", "acts", "--eps", "0.7"]
    assert main([*args, "--centered", "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    assert "(centred match)" in out and "starved" not in out  # 500 samples for 12 + 10 neurons
    import nsm

    item = json.loads(out_json.read_text())[0]
    expected = nsm.max_match(X, Y.astype(np.float32), 0.7, centered=True)
    assert item["centered"] is True and item["few_samples"] is False
    assert item["x"] == expected.x.tolist() and item["y"] == expected.y.tolist()
    plain = nsm.max_match(X, Y.astype(np.float32), 0.7)
    assert (plain.x.tolist(), plain.y.tolist()) != (item["x"], item["y"])
    np.save(tmp / "few_a.npy", X[:30])
    np.save(tmp / "few_b.npy", Y[:30])
    assert main(["match", str(tmp / "few_a.npy"), str(tmp / "few_b.npy"), "--eps", "0.4"]) == 0
    assert "note: starved: 1.4 samples per neuron" in capsys.readouterr().out


def test_demo_draws_the_centred_curves(demo_run):
    out, report_dir = demo_run
    assert (report_dir / "curves_centred.png").stat().st_size > 0
    line = next(line for line in out.splitlines() if line.startswith("centred match"))
    assert "relu1" in line and "baseline" in line
