"""Hypothesis strategies shared by property tests."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st


def json_values(*, integer_bits: int) -> st.SearchStrategy[Any]:
    """Any JSON value (no NaN or infinities), nested a little; integers within
    ±2**`integer_bits`."""
    return st.recursive(
        st.none()
        | st.booleans()
        | st.integers(min_value=-(2**integer_bits), max_value=2**integer_bits)
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(),
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(st.text(max_size=6), children, max_size=4)
        ),
        max_leaves=12,
    )
