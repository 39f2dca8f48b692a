"""Files nsm writes are replaced whole or not at all (nsm._files): a save that fails or is killed
half-way leaves the previous file as it was; an output path that is a symbolic link is refused;
a Gram's file name follows one rule for save and load."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import nsm
from nsm.results import Comparison, CrossComparison, LayerComparison


def small_comparison(seed: int = 0) -> Comparison:
    X = np.random.default_rng(seed).random((300, 4))
    g = nsm.Gram.from_arrays(X, X[:, :2])
    return Comparison({"fc": LayerComparison("fc", nsm.match_thresholds(g), None, gram=g)}, eps=[0.1])


def leftovers(folder) -> list[str]:
    return sorted(f for f in os.listdir(folder) if f.endswith(".tmp"))


def test_a_comparison_save_that_fails_half_way_leaves_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "report.json"
    small_comparison(0).save(path, grams=True)
    before, grams_before = path.read_bytes(), (tmp_path / "report.json.grams.npz").read_bytes()

    def broken(self):
        raise RuntimeError("disk full")

    monkeypatch.setattr(LayerComparison, "to_dict", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        small_comparison(1).save(path, grams=True)
    assert path.read_bytes() == before
    assert (tmp_path / "report.json.grams.npz").read_bytes() == grams_before
    assert leftovers(tmp_path) == []


def test_a_gram_save_that_fails_mid_write_leaves_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "gram.npz"
    old = nsm.Gram.from_arrays(np.ones((5, 2)), np.ones((5, 1)))
    old.save(path)
    real_savez = np.savez

    def half_then_fail(file, **arrays):
        file.write(b"PK\x03\x04 half a zip")
        raise OSError("no space left on device")

    monkeypatch.setattr(np, "savez", half_then_fail)
    with pytest.raises(OSError, match="no space"):
        nsm.Gram.from_arrays(np.zeros((7, 2)), np.ones((7, 1))).save(path)
    monkeypatch.setattr(np, "savez", real_savez)
    assert nsm.Gram.load(path).n_samples == 5
    assert leftovers(tmp_path) == []


def test_a_grid_save_that_fails_half_way_leaves_the_old_file(tmp_path, monkeypatch):
    X = np.random.default_rng(0).random((300, 4))
    cc = CrossComparison(["a"], ["b"], {("a", "b"): nsm.Gram.from_arrays(X, X**2)})
    path = tmp_path / "cross.json"
    cc.save(path)
    before = path.read_bytes()
    monkeypatch.setattr(CrossComparison, "to_rows", lambda self: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        cc.save(path)
    assert path.read_bytes() == before


def test_a_save_killed_mid_write_leaves_a_file_that_loads(tmp_path):
    # A child saves a large Gram over and over; SIGKILL lands mid-write with high probability.
    path = tmp_path / "gram.npz"
    nsm.Gram.from_arrays(np.ones((5, 2)), np.ones((5, 1))).save(path)
    child = textwrap.dedent(
        f"""
        import numpy as np, nsm, sys
        g = nsm.Gram.from_matrix(np.eye(1500), 700, 10)
        print("ready", flush=True)
        while True:
            g.save({str(path)!r})
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
    time.sleep(0.7)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    assert nsm.Gram.load(path).n_samples in (5, 10)  # the old Gram or a new one, whole


@pytest.mark.parametrize("dangling", [True, False])
def test_an_output_path_that_is_a_symlink_is_refused(tmp_path, dangling):
    target = tmp_path / "elsewhere.json"
    if not dangling:
        target.write_text("keep me")
    link = tmp_path / "report.json"
    os.symlink(target, link)
    with pytest.raises(ValueError, match="symbolic link"):
        small_comparison().save(link)
    gram_link = tmp_path / "gram.npz"
    os.symlink(target, gram_link)
    with pytest.raises(ValueError, match="symbolic link"):
        nsm.Gram.from_arrays(np.ones((5, 2)), np.ones((5, 1))).save(gram_link)
    assert target.exists() != dangling
    if not dangling:
        assert target.read_text() == "keep me"


def test_a_gram_saved_under_a_name_without_suffix_loads_under_the_same_name(tmp_path):
    g = nsm.Gram.from_arrays(np.ones((5, 2)), np.ones((5, 1)))
    g.save(tmp_path / "name")
    assert os.listdir(tmp_path) == ["name.npz"]
    assert nsm.Gram.load(tmp_path / "name").n_samples == 5
    assert nsm.Gram.load(tmp_path / "name.npz").n_samples == 5


def test_a_saved_file_keeps_the_usual_permissions(tmp_path):
    path = tmp_path / "report.json"
    small_comparison().save(path)
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask


@pytest.mark.parametrize(
    ("field", "value"),
    [("x", [5.0, 0.1]), ("x", [-3.0, 0.1]), ("dead_x", [7]), ("count_dead", "no"), ("n_samples", -4)],
)
def test_a_crafted_grid_file_is_refused_like_a_crafted_comparison(tmp_path, field, value):
    import json

    X = np.random.default_rng(0).random((300, 2))
    cc = CrossComparison(["a"], ["b"], {("a", "b"): nsm.Gram.from_arrays(X, X**2)})
    path = tmp_path / "cross.json"
    cc.save(path)
    d = json.loads(path.read_text())
    d["pairs"][0]["thresholds"][field] = value
    path.write_text(json.dumps(d))
    with pytest.raises(ValueError, match=f"pairs\\[0\\].thresholds.{field}"):
        CrossComparison.load(path)


def comparison_of(widths: list[tuple[int, int]], seed: int = 0) -> Comparison:
    rng = np.random.default_rng(seed)
    layers = {}
    for k, (a, b) in enumerate(widths):
        X = rng.random((200, a))
        g = nsm.Gram.from_arrays(X, np.hstack([X, rng.random((200, b))])[:, :b])
        layers[f"l{k}"] = LayerComparison(f"l{k}", nsm.match_thresholds(g), None, gram=g)
    return Comparison(layers, eps=[0.1])


def test_a_save_without_grams_removes_the_stale_grams_of_the_file_it_replaces(tmp_path):
    path = tmp_path / "report.json"
    comparison_of([(8, 8)] * 3).save(path, grams=True)
    comparison_of([(3, 2)] * 2, seed=1).save(path)
    assert not (tmp_path / "report.json.grams.npz").exists()
    assert all(lc.gram is None for lc in Comparison.load(path).values())


def test_load_refuses_the_grams_of_another_comparison(tmp_path):
    # Another comparison's Grams file beside this one's JSON was attached by position.
    other, mine = tmp_path / "other.json", tmp_path / "report.json"
    comparison_of([(8, 8)] * 3).save(other, grams=True)
    comparison_of([(3, 2)] * 2, seed=1).save(mine)
    os.replace(tmp_path / "other.json.grams.npz", tmp_path / "report.json.grams.npz")
    with pytest.raises(ValueError, match="another comparison"):
        Comparison.load(mine)


def test_load_refuses_an_old_grams_file_whose_sizes_are_not_the_layers(tmp_path):
    # Files from before the Grams carried their JSON's digest: checked by the layers' sizes.
    other, mine = tmp_path / "other.json", tmp_path / "report.json"
    comparison_of([(8, 8)] * 3).save(other, grams=True)
    comparison_of([(3, 2)] * 2, seed=1).save(mine)
    with np.load(tmp_path / "other.json.grams.npz") as f:
        legacy = {k: f[k] for k in f.files if k != "__json_sha256__"}
    np.savez(tmp_path / "report.json.grams.npz", **legacy)
    with pytest.raises(ValueError, match="another comparison"):
        Comparison.load(mine)


def test_a_grid_refuses_the_grams_of_another_grid(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.random((300, 4))
    small = CrossComparison(["a"], ["b"], {("a", "b"): nsm.Gram.from_arrays(X, X**2)})
    big = CrossComparison(["a"], ["b"], {("a", "b"): nsm.Gram.from_arrays(rng.random((300, 6)), X)})
    big.save(tmp_path / "big.json", grams=True)
    small.save(tmp_path / "cross.json")
    os.replace(tmp_path / "big.json.grams.npz", tmp_path / "cross.json.grams.npz")
    with pytest.raises(ValueError, match="another comparison"):
        CrossComparison.load(tmp_path / "cross.json")


def test_deeply_nested_json_is_a_one_line_error(tmp_path):
    # json's RecursionError came out as a traceback.
    path = tmp_path / "report.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    for cls in (Comparison, CrossComparison):
        with pytest.raises(ValueError, match="nested too deeply"):
            cls.load(path)
