"""The one resolver of what the public functions take: two layers' activations ``(X, Y)`` or one
:class:`nsm.Gram` in their place (and, for ``match_auc``, a :class:`nsm.Thresholds`), with the
same checks and messages everywhere."""

from __future__ import annotations

from typing import Any

from .._validation import Precision, check_groups
from ..gram import Gram

__all__ = ["resolve_gram", "split_gram_form"]


def resolve_gram(
    function: str,
    X: Any,
    Y: Any,
    *,
    num_threads: int | None = None,
    groups: Any = None,
    form: str = "",
    precision: Precision | None = None,
    shifted: bool = False,
) -> Gram:
    """The Gram a public ``function`` works on: ``X`` itself when it is a Gram, else the Gram of
    the arrays ``X, Y`` (with ``groups`` jackknife groups of contiguous rows, in ``precision``
    when given). ``form`` names the arguments after them in messages (``", eps"``);
    ``shifted``: the caller read the Gram form's arguments already (:func:`split_gram_form`),
    so ``Y`` may hold one of them. A Gram with other groups than asked for raises ValueError.

    Examples
    --------
    >>> import numpy as np, nsm
    >>> from nsm.match.inputs import resolve_gram
    >>> resolve_gram("f", np.ones((4, 2)), np.ones((4, 1))).n_samples
    4
    >>> resolve_gram("f", np.ones((4, 2)), None)
    Traceback (most recent call last):
    TypeError: f() takes (X, Y) or (gram): pass both layers' activations, or one Gram
    """
    usage = f"{function}() takes (X, Y{form}) or (gram{form})"
    k = check_groups(groups)
    if isinstance(X, Gram):
        if Y is not None and not shifted:
            raise TypeError(f"{usage}: got a Gram and a second argument")
        if k is not None and X.groups != k:
            raise ValueError(
                f"{function}: groups={k} cannot split a Gram that has {X.groups or 'no'} groups (its "
                "samples are already summed): build the Gram with nsm.Gram(..., groups=K), or pass "
                "the arrays"
            )
        return X
    if X is None or Y is None or isinstance(Y, Gram):
        raise TypeError(f"{usage}: pass both layers' activations, or one Gram")
    if precision is None:
        return Gram.from_arrays(X, Y, num_threads=num_threads, groups=k)
    return Gram.from_arrays(X, Y, num_threads=num_threads, groups=k, precision=precision)


def split_gram_form(function: str, X: Any, Y: Any, rest: tuple, form: str) -> tuple:
    """The arguments after the Gram or the two arrays, by meaning.

    The signatures name the arrays form, ``f(X, Y, a, b)``; in the Gram form ``f(gram, a, b)``
    positional arguments land one slot early (``Y=a, a=b``) while keywords keep their names.
    Returns ``(a, b)`` either way; a missing or extra argument raises TypeError showing both
    forms.

    Examples
    --------
    >>> import numpy as np, nsm
    >>> from nsm.match.inputs import split_gram_form
    >>> g = nsm.Gram.from_arrays(np.ones((4, 2)), np.ones((4, 1)))
    >>> split_gram_form("max_match", g, 0.5, (None,), ", eps")
    (0.5,)
    """
    usage = f"{function}() takes (X, Y{form}) or (gram{form})"
    if isinstance(X, Gram):
        slots = (Y, *rest)
        if Y is not None:
            given = next((i for i, v in enumerate(slots) if v is None), len(slots))
            if given > len(rest):
                raise TypeError(f"{usage}; got a Gram and {given} more arguments")
            rest = tuple(slots[i] if i < given else rest[i] for i in range(len(rest)))
    if any(r is None for r in rest):
        raise TypeError(usage)
    return rest
