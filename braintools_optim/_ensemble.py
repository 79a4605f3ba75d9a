"""An optimizer of an ensemble: every State carries leading member axes.

An ensemble is built with ``brainstate.transform.vmap_new_states``: the model
and its optimizer are constructed once per member inside it, so the
optimizer registers one member's parameters (their shapes, its layout) while
every State it creates (moments, step counter, learning rates, skip counters)
comes out with a leading axis of the ensemble's size. Training runs inside
``brainstate.transform.vmap`` over those States, where each member sees its
own unbatched values and the optimizer works unchanged (``docs/distributed.md``).

Outside ``vmap`` the optimizer sees the batched values. This module lets its
read-outs answer per member instead of misreading a member axis as data
(``opt.buffers()``, ``state_dict()``, learning rates and weight decay as one
value per member), and explains the errors of what cannot work there.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple

import jax
import numpy as np


def member_axes(value: Any, base_ndim: int = 0) -> int:
    """How many leading member axes ``value`` carries beyond the ``base_ndim`` it has for one member."""
    if value is None or isinstance(value, jax.core.Tracer):
        return 0
    return max(int(np.ndim(value)) - base_ndim, 0)


def unpack(layout, stored: Sequence[Any], ndim: Optional[int] = None):
    """``layout.unpack(stored)`` for one member, mapped over any leading member axes of ``stored``.

    ``ndim`` is the first stored array's ndim for one member, as written at
    registration (``GroupStorage.stored_ndims``: inside ``vmap_new_states`` for
    an ensemble); axes beyond it are member axes. The per-parameter layout
    slices nothing, so it needs no mapping.
    """
    stored = list(stored)
    extra = 0 if ndim is None or not stored or getattr(layout, 'buckets', None) is None \
        else member_axes(stored[0], ndim)
    fn = layout.unpack
    for _ in range(extra):
        fn = jax.vmap(fn)
    return list(fn(stored))


def host_entry(value, index: int):
    """Entry ``index`` of a per-group vector: a float, or one per member (NumPy) for an ensemble."""
    entry = value[..., index]
    return np.asarray(entry) if np.ndim(entry) else entry


def check_structure_fixed(opt) -> None:
    """Refuse registration and group changes outside ``vmap`` once the States carry member axes."""
    if member_axes(opt.step_count.value):
        raise RuntimeError(
            f"{type(opt).__name__} belongs to an ensemble (its States carry a leading member axis, from "
            f"brainstate.transform.vmap_new_states); its parameters and groups are fixed: declare them "
            f"inside the same vmap_new_states call that built it")


def describe_shape_change(expected: Tuple[int, ...], now: Tuple[int, ...]) -> Optional[str]:
    """Why a parameter's shape differs, when a member axis explains it (``None`` otherwise)."""
    k = len(now) - len(expected)
    if k > 0 and tuple(now[k:]) == tuple(expected):
        return (f"it carries a leading member axis {list(now[:k])}: this optimizer belongs to an ensemble "
                f"(built under brainstate.transform.vmap_new_states) and updates one member at a time; call "
                f"update inside brainstate.transform.vmap over the model's and the optimizer's States "
                f"(docs/distributed.md)")
    if k < 0 and tuple(expected[-k:]) == tuple(now):
        return (f"it was registered with a leading axis {list(expected[:-k])} (the whole ensemble) and is now "
                f"updated one member at a time: build the optimizer inside the same "
                f"brainstate.transform.vmap_new_states call as the model, so it registers one member")
    return None
