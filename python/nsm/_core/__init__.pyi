"""
nsm's compiled core (private: use the nsm package)
"""
from __future__ import annotations
import collections.abc
import numpy
import numpy.typing
import typing
from . import _testing
__all__: list[str] = ['GramAccumulator', 'MIXED_BLOCK_ROWS', 'MIXED_MAX_ABS', 'MIXED_MIN_ABS', 'MatchEngine', 'MinimalMatchSearch', 'engine_threads', 'kernel_name']
class GramAccumulator:
    @staticmethod
    def block_rows(n: typing.SupportsInt | typing.SupportsIndex) -> int:
        ...
    def __init__(self, n_x: typing.SupportsInt | typing.SupportsIndex, n_y: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def assign(self, gram: typing.Annotated[numpy.typing.ArrayLike, numpy.float64, "[m, n]"], column_sums: typing.Annotated[numpy.typing.ArrayLike, numpy.float64, "[m, 1]"], n_samples: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def column_sums(self) -> typing.Annotated[numpy.typing.NDArray[numpy.float64], "[m, 1]"]:
        ...
    def matrix(self) -> typing.Annotated[numpy.typing.NDArray[numpy.float64], "[m, n]"]:
        ...
    def merge(self, other: GramAccumulator) -> None:
        ...
    def state(self) -> tuple[typing.Annotated[numpy.typing.NDArray[numpy.float64], "[m, n]"], typing.Annotated[numpy.typing.NDArray[numpy.float64], "[m, 1]"], int]:
        """
        (matrix, column_sums, n_samples) taken together, between two whole updates.
        """
    def update(self, x: numpy.ndarray, y: numpy.ndarray, num_threads: typing.SupportsInt | typing.SupportsIndex, precision: str = 'float64') -> None:
        ...
    @property
    def n_samples(self) -> int:
        ...
    @property
    def n_x(self) -> int:
        ...
    @property
    def n_y(self) -> int:
        ...
class MatchEngine:
    def __init__(self, gram: numpy.ndarray, n_x: typing.SupportsInt | typing.SupportsIndex, n_samples: typing.SupportsInt | typing.SupportsIndex, dead_tol: typing.SupportsFloat | typing.SupportsIndex, rank_tol: typing.SupportsFloat | typing.SupportsIndex, num_threads: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def max_match(self, eps: collections.abc.Sequence[typing.SupportsFloat | typing.SupportsIndex]) -> numpy.typing.NDArray[numpy.bool]:
        ...
    def ratios(self) -> typing.Annotated[numpy.typing.NDArray[numpy.float64], "[m, 1]"]:
        ...
    def thresholds(self) -> typing.Annotated[numpy.typing.NDArray[numpy.float64], "[m, 1]"]:
        ...
    @property
    def dead(self) -> numpy.typing.NDArray[numpy.bool]:
        ...
    @property
    def rank_tol(self) -> float:
        ...
class MinimalMatchSearch:
    def __init__(self, engine: MatchEngine, eps: typing.SupportsFloat | typing.SupportsIndex, order: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex]) -> None:
        ...
    def find(self, neuron: typing.SupportsInt | typing.SupportsIndex, order: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex]) -> typing.Any:
        ...
    def maximum_match(self) -> numpy.typing.NDArray[numpy.bool]:
        ...
def engine_threads(n: typing.SupportsInt | typing.SupportsIndex, requested: typing.SupportsInt | typing.SupportsIndex) -> int:
    """
    The threads an engine over n neurons uses when `requested` are asked for.
    """
def kernel_name() -> str:
    """
    The dense kernel set chosen for this CPU.
    """
MIXED_BLOCK_ROWS: int = 2048
MIXED_MAX_ABS: float = 1000000000000000.0
MIXED_MIN_ABS: float = 1e-05
