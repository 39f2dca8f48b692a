"""One resolver of "(X, Y) or a Gram" (nsm.match.inputs): every public function that takes them
refuses the same wrong forms with the same kind of message."""

from __future__ import annotations

import numpy as np
import pytest

import nsm

TWO_FORMS = [
    ("max_match", lambda *a: nsm.max_match(*a, eps=0.1)),
    ("ratios", nsm.ratios),
    ("match_thresholds", nsm.match_thresholds),
    ("simple_matches", lambda *a: nsm.simple_matches(*a, eps=0.1, progress=False)),
    ("linear_cka", nsm.measures.linear_cka),
    ("cca", nsm.measures.cca),
    ("svcca", nsm.measures.svcca),
    ("procrustes", nsm.measures.procrustes),
    ("match_auc", nsm.measures.match_auc),
]


@pytest.mark.parametrize(("name", "f"), TWO_FORMS, ids=[n for n, _ in TWO_FORMS])
def test_every_function_refuses_one_layer_alone(name, f):
    X = np.random.default_rng(0).random((50, 3))
    with pytest.raises(TypeError, match=rf"{name}\(\) takes \(X, Y.*\) or \(gram.*\)"):
        f(X, None)


@pytest.mark.parametrize(("name", "f"), TWO_FORMS, ids=[n for n, _ in TWO_FORMS])
def test_every_function_reads_a_gram_as_its_arrays(name, f):
    rng = np.random.default_rng(0)
    X, Y = rng.random((200, 3)), rng.random((200, 2))
    by_arrays, by_gram = f(X, Y), f(nsm.Gram.from_arrays(X, Y))
    if isinstance(by_arrays, float):
        assert by_gram == pytest.approx(by_arrays, rel=1e-12, abs=1e-12)
    else:
        assert type(by_gram) is type(by_arrays)


@pytest.mark.parametrize("f", [nsm.match_thresholds, nsm.measures.linear_cka, nsm.measures.match_auc])
def test_a_gram_cannot_be_split_into_other_groups(f):
    g = nsm.Gram.from_arrays(np.random.default_rng(0).random((60, 3)), np.ones((60, 1)))
    with pytest.raises(ValueError, match="cannot split a Gram that has no groups"):
        f(g, groups=3)
