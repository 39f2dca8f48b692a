"""Inputs from torch, and nsm without torch."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import nsm

torch = pytest.importorskip("torch", reason="the torch extra is not installed")


def test_cpu_tensors_equal_numpy(rng):
    X, Y = rng.random((300, 6)), rng.random((300, 5))
    from_numpy = nsm.max_match(X, Y, [0.3, 0.6])
    tx = torch.from_numpy(X).float().requires_grad_(True)
    ty = torch.from_numpy(Y)
    from_torch = nsm.max_match(tx, ty, [0.3, 0.6])
    for a, b in zip(from_numpy, from_torch):
        assert a.x.tolist() == b.x.tolist() and a.y.tolist() == b.y.tolist()
    np.testing.assert_allclose(
        nsm.Gram.from_arrays(tx, ty).matrix, nsm.Gram.from_arrays(X.astype(np.float32), Y).matrix, rtol=1e-12
    )


@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "int64", "bool"])
def test_tensor_dtypes(rng, dtype):
    X = torch.from_numpy(rng.random((100, 3)) * 3).to(getattr(torch, dtype))
    Y = torch.from_numpy(rng.random((100, 2)) * 3).to(getattr(torch, dtype))
    A = torch.cat([X, Y], dim=1).double().numpy()
    np.testing.assert_allclose(nsm.Gram.from_arrays(X, Y, precision="float64").matrix, A.T @ A, rtol=1e-12)


def test_non_contiguous_tensor(rng):
    X = torch.from_numpy(rng.random((5, 80))).t()  # a transposed view
    Y = torch.from_numpy(rng.random((80, 8)))[:, 1::2]
    A = np.hstack([X.numpy(), Y.numpy()])
    np.testing.assert_allclose(nsm.Gram.from_arrays(X, Y).matrix, A.T @ A, rtol=1e-12)


def test_complex_tensor_is_rejected():
    with pytest.raises(TypeError, match="X must be real"):
        nsm.max_match(torch.ones((10, 2), dtype=torch.complex64), np.ones((10, 2)), 0.1)


def python_prints(*lines: str, hide_torch: bool = False) -> str:
    """What a fresh interpreter prints running these lines (torch made unimportable if asked)."""
    code = "\n".join((["import sys; sys.modules['torch'] = None"] if hide_torch else []) + list(lines))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_nsm_works_without_torch():
    assert (
        python_prints(
            "import numpy as np, nsm",
            "X = np.random.default_rng(0).random((200, 5)); m = nsm.max_match(X, X[:, ::-1], 0.01)",
            "print(m.similarity)",
            hide_torch=True,
        )
        == "1.0"
    )


def test_numpy_input_does_not_import_torch():
    assert (
        python_prints(
            "import sys, numpy as np, nsm",
            "nsm.max_match(np.random.default_rng(0).random((50, 3)), np.ones((50, 2)), 0.5)",
            "print('torch' in sys.modules)",
        )
        == "False"
    )


def test_nsm_torch_without_torch_says_how_to_install():
    out = python_prints(
        "import nsm",
        "try:\n    nsm.torch\nexcept ImportError as exc:\n    print(exc)",
        hide_torch=True,
    )
    assert "pip install 'neuron-subspace-match[torch]'" in out
