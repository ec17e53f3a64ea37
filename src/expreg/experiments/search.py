"""The width grid of the width experiment: geometric, even widths (coupled pairs never split)."""

from __future__ import annotations


def geometric_grid(m_min: int, m_max: int, ratio: float) -> list[int]:
    """Even integers m_min * ratio^k (rounded to even), k = 0, 1, ..., up to m_max; distinct, increasing."""
    if m_min < 2 or m_max < m_min or ratio <= 1:
        raise ValueError(f"need 2 <= m_min <= m_max and ratio > 1, got m_min={m_min}, m_max={m_max}, ratio={ratio}")
    out: list[int] = []
    k = 0
    while True:
        m = 2 * max(1, round(m_min * ratio**k / 2))
        if m > m_max:
            break
        if not out or m > out[-1]:
            out.append(m)
        k += 1
    return out
