"""Procedural, footprint-filtered texture building blocks (numpy, vectorised).

Textures are functions of surface coordinates in metres, so a surface looks the same from every
frame. Each function also takes the pixel footprint (metres of surface covered by one pixel along
that coordinate) and fades detail finer than about two footprints to its mean: a cheap
band-limit that keeps far and grazing surfaces from aliasing, which would otherwise break
photometric consistency between frames (view synthesis compares the same surface seen at
slightly different scales).
"""

from __future__ import annotations

import numpy as np

TABLE_SIZE = 256  # value-noise lattice period (cells); a power of two so `& (size-1)` wraps


_ROW = TABLE_SIZE + 1  # the stored table repeats its first row and column (wrap-free +1)


def make_noise_table(rng: np.random.Generator) -> np.ndarray:
    """Random lattice values in [0, 1): flat float32 `[(TABLE_SIZE + 1)^2]`, periodic.

    The last row and column repeat the first, so the four corners of a cell are the flat
    indices i, i + 1, i + _ROW, i + _ROW + 1 without wrapping each one.
    """
    core = rng.random((TABLE_SIZE, TABLE_SIZE), dtype=np.float32)
    return np.pad(core, ((0, 1), (0, 1)), mode="wrap").ravel()


def _index(iu: np.ndarray, iv: np.ndarray) -> np.ndarray:
    mask = TABLE_SIZE - 1
    return (iv & mask) * _ROW + (iu & mask)


def lattice(table: np.ndarray, iu: np.ndarray, iv: np.ndarray) -> np.ndarray:
    """Value of the lattice cell (iu, iv) (integer arrays, any range) in [0, 1)."""
    return table[_index(iu, iv)]


def value_noise(table: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Smooth 2D value noise in [0, 1) with unit cell size, C1-continuous (smoothstep)."""
    fu = np.floor(u)
    fv = np.floor(v)
    su = u - fu
    sv = v - fv
    index = _index(fu.astype(np.int32), fv.astype(np.int32))
    su = su * su * (3.0 - 2.0 * su)
    sv = sv * sv * (3.0 - 2.0 * sv)
    a = table[index]
    b = table[index + 1]
    c = table[index + _ROW]
    d = table[index + (_ROW + 1)]
    top = a + (b - a) * su
    bottom = c + (d - c) * su
    return top + (bottom - top) * sv


def detail_weight(wavelength: float, footprint: np.ndarray) -> np.ndarray:
    """1 where `wavelength` >= 4 footprints, 0 where <= 2 footprints, linear in between."""
    return np.clip(wavelength / footprint * 0.5 - 1.0, 0.0, 1.0)


def fbm(table: np.ndarray, u: np.ndarray, v: np.ndarray, footprint: np.ndarray,
        octaves, seed_offset: float = 0.0) -> np.ndarray:
    """Sum of zero-mean value-noise octaves, each faded out when finer than the footprint.

    Args:
      table: lattice from `make_noise_table`.
      u, v: surface coordinates in metres, `[n]`.
      footprint: metres per pixel, `[n]` (the larger of the two axes' footprints).
      octaves: sequence of (wavelength_m, amplitude).
      seed_offset: shifts the lattice so different materials do not share a pattern.
    Returns:
      `[n]` float32 noise around 0 (each octave in [-amplitude/2, amplitude/2]).
    """
    total = np.zeros(u.shape, np.float32)
    for k, (wavelength, amplitude) in enumerate(octaves):
        weight = detail_weight(wavelength, footprint)
        if not weight.any():
            continue
        shift = seed_offset + 37.17 * k
        total += (amplitude * weight) * (
            value_noise(table, u * (1.0 / wavelength) + shift, v * (1.0 / wavelength) - shift)
            - 0.5)
    return total


def step_coverage(distance: np.ndarray, footprint: np.ndarray) -> np.ndarray:
    """Fraction of a pixel on the positive side of an edge at signed `distance` (box filter)."""
    return np.clip(distance / footprint + 0.5, 0.0, 1.0)


def line_coverage(distance: np.ndarray, width: float, footprint: np.ndarray) -> np.ndarray:
    """Fraction of a pixel covered by a line of `width` at `distance` from its centre line.

    A box filter of one footprint: sharp lines near the camera, soft far away, no aliasing.
    """
    return np.clip((0.5 * width - np.abs(distance)) / footprint + 0.5, 0.0,
                   np.minimum(1.0, width / footprint))


def periodic_coverage(u: np.ndarray, period: float, width: float,
                      footprint: np.ndarray) -> np.ndarray:
    """Coverage of stripes of `width` centred at multiples of `period`, footprint-filtered.

    When the period shrinks below ~2 footprints the result fades to the mean width/period, so
    dense patterns (mortar, slats) turn into their average colour instead of moire.
    """
    return coverage_at(periodic_distance(u, period), period, width, footprint)


def periodic_distance(u: np.ndarray, period) -> np.ndarray:
    """Signed distance from u to the nearest multiple of `period` (stripe centres)."""
    return u - period * np.round(u * (1.0 / period))


def coverage_at(distance: np.ndarray, period, width, footprint: np.ndarray) -> np.ndarray:
    """`periodic_coverage` from a precomputed `periodic_distance` (shared by nested stripes)."""
    sharp = line_coverage(distance, width, footprint)
    fade = np.clip(footprint * (2.0 / period) - 0.5, 0.0, 1.0)
    return sharp + (width / period - sharp) * fade
