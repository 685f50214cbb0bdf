"""What counts as an int or a number in an argument, for every room (envs included: no torch here).

``True`` is an ``int`` in Python and never a count, a seed or a width here, so a bool is neither;
NumPy's integers and floats are (``np.int64(3)`` is a fine seed).
"""

from __future__ import annotations

import numbers
from typing import Any


def is_int(value: Any) -> bool:
    """An integer, not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A real number (an int or a float), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_int(name: str, value: Any, low: int = 1) -> int:
    """``value`` as an int, or ``ValueError("name=value: expected a positive int")`` (``an int >= low``
    for another ``low``)."""
    if not is_int(value) or value < low:
        raise ValueError(f"{name}={value!r}: expected {'a positive int' if low == 1 else f'an int >= {low}'}")
    return int(value)
