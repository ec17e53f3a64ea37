"""The two activations of MATH.md 1: exp (the paper's) and ReLU (for comparison).

An activation supplies, over a backend, the value sigma(Z) computed in place
and the derivative sigma'(Z) expressed through that value (exp: E itself;
ReLU: 1[E > 0]), so the blocked passes never keep Z beside E.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .backends import Array, Backend
from .choices import Registry


@dataclass(frozen=True)
class Activation:
    """sigma and sigma' for the blocked passes.

    Attributes
    ----------
    name : str
        ``"exp"`` or ``"relu"``.
    value_ : callable (backend, Z) -> E
        Overwrites Z (n x b) with sigma(Z) and returns it.
    derivative_is_value : bool
        True when sigma' = sigma (exp), so E doubles as the derivative.
    """

    name: str
    value_: Callable[[Backend, Array], Array]
    derivative_is_value: bool

    def derivative(self, backend: Backend, E: Array) -> Array:
        """sigma'(Z) from E = sigma(Z); may return ``E`` itself (exp)."""
        if self.derivative_is_value:
            return E
        return backend.positive(E)


EXP = Activation("exp", lambda be, z: be.exp_(z), derivative_is_value=True)
RELU = Activation("relu", lambda be, z: be.relu_(z), derivative_is_value=False)

#: Every activation by name: the one declaration of the ``activation`` choice.
ACTIVATIONS: Registry[Activation] = Registry("activation")
ACTIVATIONS.register(EXP.name, EXP)
ACTIVATIONS.register(RELU.name, RELU)


def get_activation(name: str) -> Activation:
    """Return the activation called ``name`` (one of ``ACTIVATIONS``, e.g. ``"exp"``)."""
    return ACTIVATIONS[name]
