"""Long-format tables of results (one dict per row) written as CSV or handed to pandas."""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from typing import Any

__all__ = ["to_dataframe", "write_csv"]


def _cell(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    if value is None:
        return ""
    return value


def write_csv(rows: Sequence[dict[str, Any]], path: Any) -> None:
    """Write ``rows`` (dicts with the same keys, in order) as CSV with a header line.

    Examples
    --------
    >>> import tempfile, os
    >>> from nsm.export import write_csv
    >>> path = os.path.join(tempfile.mkdtemp(), "t.csv")
    >>> write_csv([{"a": 1, "b": float("nan")}], path)
    >>> with open(path) as f:
    ...     f.read().splitlines()
    ['a,b', '1,nan']
    """
    if not rows:
        raise ValueError("nothing to write: the result has no rows")
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _cell(v) for k, v in row.items()})


def to_dataframe(rows: Sequence[dict[str, Any]]) -> Any:
    """``rows`` as a pandas DataFrame; an ImportError that says how to install pandas if missing."""
    try:
        import pandas
    except ImportError as exc:
        raise ImportError("to_pandas() needs pandas: pip install pandas (or use to_csv)") from exc
    return pandas.DataFrame(list(rows))
