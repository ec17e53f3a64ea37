"""The activations of docs/theory.md section 1 and everything each one knows: exp (the paper's) and ReLU.

An ``Activation`` carries, as a neural-tangents layer carries its
``kernel_fn``, all its maths:

- over a backend, the value sigma(Z) computed in place and the derivative
  sigma'(Z) expressed through that value (exp: E itself; ReLU: 1[E > 0]),
  so the blocked passes never keep Z beside E;
- its infinite-width kernels between two row sets A (n1, d) and B (n2, d),
  given G = A B^T (docs/theory.md section 3), with w ~ N(0, I_d):

      ntk(A, B, G)_ij  = <a_i, b_j> E_w sigma'(<w, a_i>) sigma'(<w, b_j>)   (H^cts)
      nngp(A, B, G)_ij = E_w sigma(<w, a_i>) sigma(<w, b_j>)                 (K)

  exp   H^cts_ij = <a_i,b_j> exp(||a_i + b_j||^2 / 2),  K_ij = exp(||a_i + b_j||^2 / 2)
  relu  H^cts_ij = <a_i,b_j> (pi - theta_ij) / (2 pi),
        K_ij     = ||a_i|| ||b_j|| (sin theta_ij + (pi - theta_ij) cos theta_ij) / (2 pi),
        theta_ij = angle(a_i, b_j).

Everything else (``ops``, ``kernels``, the estimator, the experiments)
dispatches on the object, never on its name. Adding an activation is one
``Activation`` here plus ``ACTIVATIONS.register``; its tests check the
closed forms against a Monte-Carlo average of the finite-width kernel.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .backends import Array, Backend
from .choices import Registry
from .errors import ExpOverflowError

#: A closed-form kernel: (A (n1, d), B (n2, d), G = A B^T (n1, n2)) -> (n1, n2), float64.
KernelFn = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Activation:
    """sigma, sigma' and the closed-form kernels of one activation.

    Attributes
    ----------
    name : str
        The name it is registered under (``ACTIVATIONS``), e.g. ``"exp"``.
    value_ : callable (backend, Z) -> E
        Overwrites Z (n x b) with sigma(Z) and returns it.
    derivative_from_value : callable (backend, E) -> D
        sigma'(Z) from E = sigma(Z), (n x b); may return E itself (exp) and
        must not modify E otherwise (so no trailing underscore: it works
        out of place, unlike ``value_``).
    ntk, nngp : callable (A, B, G) -> ndarray (n1, n2)
        H^cts and the NNGP kernel K between the rows of A and B, float64
        (see the module docstring).
    fused_value_matvec_ : callable (backend, Z, a, acc) -> E, optional
        A fused Z <- sigma(Z), acc += Z @ a (exp: ``Backend.exp_matvec_``);
        None: ``value_`` then a matrix-vector product (the method
        ``value_matvec_`` picks one or the other).
    theorem : bool
        Whether the theorem of Gao, Mahadevan, Song (``theory``) covers this
        activation (exp only): experiments report its bounds only then.
    scale_free : bool
        sigma is positively homogeneous (relu): H^cts sees only each point's
        direction, so two points on one ray from the origin make it singular
        (``validation.check_points_distinct``).
    """

    name: str
    value_: Callable[[Backend, Array], Array]
    derivative_from_value: Callable[[Backend, Array], Array]
    ntk: KernelFn
    nngp: KernelFn
    fused_value_matvec_: Callable[[Backend, Array, Array, Array], Array] | None = None
    theorem: bool = False
    scale_free: bool = False

    def derivative(self, backend: Backend, E: Array) -> Array:
        """sigma'(Z) from E = sigma(Z); may return ``E`` itself (exp)."""
        return self.derivative_from_value(backend, E)

    def value_matvec_(self, backend: Backend, Z: Array, a: Array, acc: Array) -> Array:
        """Z <- sigma(Z) in place and acc += Z @ a; returns Z. Z (n, b), a (b,), acc (n,)."""
        if self.fused_value_matvec_ is not None:
            return self.fused_value_matvec_(backend, Z, a, acc)
        acc += backend.matmul(self.value_(backend, Z), a)
        return Z


# ------------------------------------------------------------------ helpers
def exp_half_sum_sq(A: np.ndarray, B: np.ndarray, G: np.ndarray) -> np.ndarray:
    """exp(||a_i + b_j||^2 / 2) = E_w exp(<w, a_i>) exp(<w, b_j>) (n1 x n2), from G = A B^T; refuses to overflow float64."""
    with np.errstate(over="ignore", invalid="ignore"):
        expo = 0.5 * ((A * A).sum(1)[:, None] + (B * B).sum(1)[None, :]) + G  # ||a_i + b_j||^2 / 2
    if not expo.max() <= 700:  # also true when the max is NaN (norms that overflowed: inf - inf)
        raise ExpOverflowError(
            f"exp(||x_i + x_j||^2 / 2) overflows float64 (exponent up to {expo.max():.3g}); "
            "scale the inputs into the unit ball"
        )
    return np.exp(expo)


def angles(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """theta_ij = angle(a_i, b_j) in [0, pi] (n1 x n2); pi/2 where one row is zero, 0 where both are.

    (Every closed form multiplies the angle of a zero row by a zero norm or inner product.)

    Computed as 2 atan2(||u - v||, ||u + v||) on the unit vectors u, v, which
    is accurate near 0 and pi, unlike arccos(rho): rounding of rho by 1e-16
    near rho = 1 moves arccos by 1e-8 and would spoil the ReLU diagonal.
    """
    import scipy.spatial.distance

    def unit(M: np.ndarray) -> np.ndarray:
        norms = np.linalg.norm(M, axis=1, keepdims=True)
        return np.divide(M, norms, out=np.zeros_like(M), where=norms > 0)

    U, V = unit(A), unit(B)
    return 2.0 * np.arctan2(scipy.spatial.distance.cdist(U, V), scipy.spatial.distance.cdist(U, -V))


# ---------------------------------------------------------------------- exp
def _exp_ntk(A: np.ndarray, B: np.ndarray, G: np.ndarray) -> np.ndarray:
    return G * exp_half_sum_sq(A, B, G)


def _exp_nngp(A: np.ndarray, B: np.ndarray, G: np.ndarray) -> np.ndarray:
    return exp_half_sum_sq(A, B, G)


EXP = Activation(
    "exp",
    value_=lambda be, z: be.exp_(z),
    derivative_from_value=lambda be, e: e,
    ntk=_exp_ntk,
    nngp=_exp_nngp,
    fused_value_matvec_=lambda be, z, a, acc: be.exp_matvec_(z, a, acc),
    theorem=True,
)


# --------------------------------------------------------------------- relu
def _relu_ntk(A: np.ndarray, B: np.ndarray, G: np.ndarray) -> np.ndarray:
    return G * (np.pi - angles(A, B)) / (2 * np.pi)


def _relu_nngp(A: np.ndarray, B: np.ndarray, G: np.ndarray) -> np.ndarray:
    theta = angles(A, B)
    norms = np.outer(np.linalg.norm(A, axis=1), np.linalg.norm(B, axis=1))
    return norms * (np.sin(theta) + (np.pi - theta) * np.cos(theta)) / (2 * np.pi)


RELU = Activation(
    "relu",
    value_=lambda be, z: be.relu_(z),
    derivative_from_value=lambda be, e: be.positive(e),
    ntk=_relu_ntk,
    nngp=_relu_nngp,
    scale_free=True,
)


#: Every activation by name: the one declaration of the ``activation`` choice.
ACTIVATIONS: Registry[Activation] = Registry("activation")
ACTIVATIONS.register(EXP.name, EXP)
ACTIVATIONS.register(RELU.name, RELU)


def get_activation(activation: str | Activation) -> Activation:
    """The activation called ``activation`` (one of ``ACTIVATIONS``, e.g. ``"exp"``); an ``Activation`` is returned as is."""
    if isinstance(activation, Activation):
        return activation
    return ACTIVATIONS[activation]
