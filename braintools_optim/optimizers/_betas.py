"""The ``betas`` tuple check shared by the catalog optimizers."""

from __future__ import annotations

from typing import Tuple

from .. import _checks as checks


def check_betas(betas, count: int = 2) -> Tuple[float, ...]:
    """``betas`` as a tuple of ``count`` floats, each in ``[0, 1)``, or a clear error.

    >>> check_betas((0.9, 0.99))
    (0.9, 0.99)
    """
    try:
        values = tuple(betas)
    except TypeError:
        raise TypeError(f"betas must be a tuple of {count} numbers, got {betas!r}") from None
    if len(values) != count:
        raise ValueError(f"betas must have {count} entries, got {betas!r}")
    return tuple(checks.unit_interval(f'betas[{i}]', b) for i, b in enumerate(values))
