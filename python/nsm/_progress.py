"""Progress bars (tqdm) that can be switched off."""

from __future__ import annotations

from typing import Any


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(total: int | None, enabled: bool, desc: str, unit: str) -> Any:
    """A tqdm bar, or an object with the same update/close that shows nothing."""
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm  # a dependency, imported when a bar is first shown

    return tqdm(total=total, desc=desc, unit=unit)
