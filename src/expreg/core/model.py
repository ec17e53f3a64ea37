"""ExpNet: the two-layer network of docs/theory.md sections 1-2, its weights and their use.

    F(W, x) = s * sum_r a_r * sigma(<w_r, x>),   sigma = exp (or ReLU)

W (d x m) is trained, a (m,) is fixed. ``NetSpec`` describes a network
without its weights (width, seed, choices, dtype, backend, blocking) and
owns what follows from the description alone: the output scale s, the block
plan of a pass, and the initial weights of any slice of neurons. ``ExpNet``
is that description plus its weights; width-sharded training
(``distributed``) and the descent loop (``descent.Shard``) use the same
``NetSpec``. The arithmetic lives in ``ops``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from typing import Any, overload

import numpy as np

from . import ops
from .activations import Activation, get_activation
from .backends import Array, Backend, canonical_dtype, get_backend
from .choices import Init, Scaling
from .errors import ExpOverflowError, overflow_checked
from .initialisation import check_width, init_weights
from .validation import check_positive_int, check_X, check_X_y, check_y

SCALINGS = Scaling.values()


def check_network(d: Any, m: Any, seed: Any, activation: str, scaling: str, init: str) -> tuple[int, int, int]:
    """Validate the settings that define a network (docs/theory.md section 1); returns (d, m, seed) as ints.

    Called by ``NetSpec``; errors name the argument.
    """
    d = check_positive_int(d, "d")
    m = check_positive_int(m, "m")
    seed = check_positive_int(seed, "seed", minimum=0)
    get_activation(activation)
    Scaling.check(scaling)
    Init.check(init)
    check_width(m, init)
    return d, m, seed


def check_scale(scale: Any) -> float:
    """The output multiplier alpha: a positive finite number (docs/theory.md section 4)."""
    try:
        value = float(scale)
    except (TypeError, ValueError):
        raise TypeError(f"scale must be a positive number (the output multiplier alpha), got {scale!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise ValueError(
            f"scale must be a positive finite number (the output multiplier alpha), got {scale!r}; "
            "alpha -> 0 is the rich regime, alpha -> inf the lazy one"
        )
    return value


@dataclass(frozen=True)
class NetSpec:
    """A network without its weights: ``ExpNet.init``'s arguments, validated.

    Attributes
    ----------
    d, m : int
        Input dimension and width (the *global* width of a sharded run).
    seed : int
        Seed of the initial weights (``initialisation``).
    activation : str
        A registered activation (``activations.ACTIVATIONS``), e.g. "exp".
    scaling : {"none", "ntk"}
        s = 1 or s = 1/sqrt(m), m the whole width.
    init : {"coupled", "gaussian"}
        "coupled" needs m even; a shard boundary may split a pair.
    scale : float
        Output multiplier alpha > 0 (default 1): s = alpha for "none",
        alpha / sqrt(m) for "ntk" (docs/theory.md section 4, lazy and rich regimes).
    dtype : numpy.float64 or numpy.float32
    backend : {"numpy", "torch"}
    device : str, optional
        Torch device; "cuda" is mapped to ``cuda:LOCAL_RANK`` by ``distributed.init_from_environment``.
    block, memory_budget : int, optional
        Blocking of the passes (``ops.plan_blocks``).

    Examples
    --------
    >>> spec = NetSpec(3, 8, scaling="ntk")
    >>> spec.s, spec.draw(2, 4)[0].shape
    (0.35355339059327373, (3, 2))
    """

    d: int
    m: int
    seed: int = 0
    activation: str = "exp"
    scaling: str = "none"
    init: str = "coupled"
    dtype: Any = np.float64
    backend: str = "numpy"
    device: str | None = None
    block: int | None = None
    memory_budget: int | None = None
    scale: float = 1.0

    @classmethod
    def settings_names(cls) -> tuple[str, ...]:
        """The fields besides d and m, in declaration order: the keywords of ``ExpNet.init`` (the one declaration)."""
        return tuple(f.name for f in fields(cls) if f.name not in ("d", "m"))

    @classmethod
    def check_settings(cls, settings: dict[str, Any], caller: str, exclude: tuple[str, ...] = ()) -> None:
        """Raise TypeError, as Python does for a misspelt argument, when ``settings`` has a key that is not a setting."""
        names = [k for k in cls.settings_names() if k not in exclude]
        unknown = [k for k in settings if k not in names]
        if unknown:
            raise TypeError(
                f"{caller}() got an unexpected keyword argument {unknown[0]!r}; the network's settings are "
                + ", ".join(names)
            )

    def identity(self) -> list[tuple[str, Any]]:
        """(name, value) of what defines the network's weights and arithmetic: d, m, seed, activation, scaling,
        init, dtype (as a string) and the output multiplier scale; not where it runs (backend, device) or how
        passes are blocked."""
        return [(k, getattr(self, k)) for k in ("d", "m", "seed", "activation", "scaling", "init")] + [
            ("dtype", str(self.dtype)),
            ("scale", self.scale),
        ]

    def __post_init__(self) -> None:
        d, m, seed = check_network(self.d, self.m, self.seed, self.activation, self.scaling, self.init)
        object.__setattr__(self, "scale", check_scale(self.scale))
        for name, value in (
            ("d", d),
            ("m", m),
            ("seed", seed),
            ("activation", str(self.activation)),
            ("scaling", str(self.scaling)),
            ("init", str(self.init)),
            ("dtype", canonical_dtype(self.dtype)),
        ):
            object.__setattr__(self, name, value)

    @property
    def s(self) -> float:
        """Output scale s of the whole network: alpha ("none"; alpha = 1 is the paper's) or alpha/sqrt(m) ("ntk")."""
        return self.scale * (1.0 if self.scaling == Scaling.none else 1.0 / math.sqrt(self.m))

    @property
    def act(self) -> Activation:
        """The activation object (``activations``)."""
        return get_activation(self.activation)

    def get_backend(self) -> Backend:
        """The array backend of ``backend`` and ``device``."""
        return get_backend(self.backend, self.device)

    def plan(self, n: int, width: int | None = None) -> ops.BlockPlan:
        """Blocking of a pass over n points and ``width`` neurons (default: all m).

        For ``init="coupled"`` the block is rounded up to an even number, so
        a pair (w, a), (w, -a) never straddles two blocks and its two terms
        cancel exactly: F(W(0), x) = 0 for every block size.
        """
        return ops.plan_blocks(
            n,
            self.m if width is None else width,
            self.dtype.itemsize,
            block=self.block,
            memory_budget=self.memory_budget,
            backend=self.get_backend(),
            pairs=self.init == Init.coupled,
            d=self.d,
        )

    def draw(self, lo: int = 0, hi: int | None = None) -> tuple[Array, Array]:
        """Initial weights (W (d, hi - lo), a (hi - lo,)) of neurons lo .. hi-1 (default: all), as backend arrays.

        Drawn from (seed, r) alone (``initialisation``), so a shard of a
        sharded run draws only its own neurons.
        """
        be = self.get_backend()
        W, a = init_weights(self.d, lo, self.m if hi is None else hi, seed=self.seed, init=self.init, dtype=self.dtype)
        return be.asarray(W, self.dtype), be.asarray(a, self.dtype)


class _InitAttribute:
    """``ExpNet.init``: the constructor on the class, the initialisation scheme on a network.

    ``ExpNet.init(d, m, seed=...)`` draws a network (``ExpNet.draw``);
    ``net.init`` is the scheme it was drawn with ("coupled" or "gaussian",
    ``net.spec.init``). One name for both, as the paper and the command line
    say "init" for the scheme and users call ``ExpNet.init`` to build.
    """

    @overload
    def __get__(self, obj: None, owner: type[ExpNet]) -> Callable[..., ExpNet]: ...

    @overload
    def __get__(self, obj: ExpNet, owner: type[ExpNet]) -> str: ...

    def __get__(self, obj: ExpNet | None, owner: type[ExpNet]) -> Callable[..., ExpNet] | str:
        if obj is None:
            return owner.draw
        return obj.spec.init


@dataclass(eq=False)
class ExpNet:
    """A width-m two-layer network with exponential (or ReLU) activation: a ``NetSpec`` and its weights.

    Create one with :meth:`ExpNet.init` (``ExpNet.draw``), or
    :meth:`ExpNet.from_spec` for given weights.

    Attributes
    ----------
    W : array (d, m)
        First-layer weights, column r is w_r. A NumPy array, or a torch
        tensor for ``backend="torch"``.
    a : array (m,)
        Output signs a_r in {-1, +1}; never trained.
    spec : NetSpec
        Everything but the weights (d, m, seed, activation, scaling, init,
        dtype, backend, device, blocking); ``activation``, ``scaling``,
        ``init``, ``seed``, ``block``, ``memory_budget``, ``backend_name`` and
        ``device`` read it.
    """

    W: Array
    a: Array
    spec: NetSpec
    _backend: Backend = field(init=False, repr=False, compare=False)

    init = _InitAttribute()

    def __post_init__(self) -> None:
        self._backend = self.spec.get_backend()
        shape = (self.spec.d, self.spec.m)
        if tuple(self.W.shape) != shape or tuple(self.a.shape) != shape[1:]:
            raise ValueError(
                f"weights of shapes W {tuple(self.W.shape)}, a {tuple(self.a.shape)} do not fit the network "
                f"(d, m) = {shape}: W must be (d, m) and a (m,)"
            )
        if self._backend.dtype_of(self.W) != self.spec.dtype:
            raise TypeError(f"W has dtype {self._backend.dtype_of(self.W)}, the network {self.spec.dtype}")

    # ------------------------------------------------------------------ build
    @classmethod
    def draw(cls, d: int, m: int, **settings: Any) -> ExpNet:
        """Draw a network as the paper does: w_r ~ N(0, I_d), a_r = +-1 (docs/theory.md section 1).

        ``ExpNet.init(...)`` is this method under the name users know.

        Parameters
        ----------
        d : int
            Input dimension.
        m : int
            Width (number of neurons); even for ``init="coupled"``.
        **settings
            Any field of ``NetSpec`` besides d and m, as a keyword (the one
            declaration of them; an unknown keyword is a TypeError):
        seed : int
            Seed; the same seed gives bit-identical weights on every backend
            and for every sharding (see ``initialisation``).
        activation : {"exp", "relu"}
        scaling : {"none", "ntk"}
            "none" is the paper's F = sum_r a_r exp(<w_r, x>); "ntk" multiplies
            by 1/sqrt(m).
        init : {"coupled", "gaussian"}
            "coupled" pairs neurons (w, a), (w, -a) so F(W(0), .) = 0.
        dtype : numpy.float64 (default) or numpy.float32
        backend : {"numpy", "torch"}
            A name of ``backends.BACKENDS``.
        device : str, optional
            Torch device ("cpu", "cuda", ...); CPU for NumPy.
        block, memory_budget : int, optional
            Blocking of the passes (see ``ops.plan_blocks``).
        scale : float, default 1
            Output multiplier alpha: s = alpha ("none") or alpha / sqrt(m)
            ("ntk"). With lr = 1/lambda_max(H(W(0))) the function moves the
            same way for every alpha while the weights move ~ 1/alpha: large
            alpha is lazy (kernel) training, small alpha rich (feature
            learning) training (docs/theory.md section 4).

        Examples
        --------
        >>> net = ExpNet.init(3, 8, seed=0)
        >>> net.W.shape, net.a.shape, net.init
        ((3, 8), (8,), 'coupled')
        """
        NetSpec.check_settings(settings, "ExpNet.init")
        spec = NetSpec(d, m, **settings)
        return cls.from_spec(spec, *spec.draw())

    @classmethod
    def from_spec(cls, spec: NetSpec, W: Array, a: Array) -> ExpNet:
        """The network ``spec`` with weights W (d, m) and a (m,) (backend arrays of ``spec``'s dtype).

        The device is recorded as resolved (torch's "cuda" with its index);
        the backend keeps the name it was registered under (``backends.BACKENDS``),
        so the network computes on exactly the backend that name makes.
        """
        return cls(W=W, a=a, spec=replace(spec, device=spec.get_backend().device))

    @classmethod
    def from_weights(cls, W: Any, a: Any, **settings: Any) -> ExpNet:
        """A network with the given weights W (d, m) and a (m,): d, m and the dtype are read from W.

        ``settings`` are the fields of ``NetSpec`` besides d, m and dtype
        (seed, activation, scaling, init, backend, device, block,
        memory_budget), as for ``ExpNet.init``. W and a are taken as arrays
        of ``backend`` in W's dtype (float32 or float64); ``seed`` and
        ``init`` only describe how such weights would be drawn (they matter
        for a checkpoint's identity and for ``spec.draw``).

        Examples
        --------
        >>> net = ExpNet.from_weights(np.zeros((2, 4)), np.array([1.0, -1.0, 1.0, -1.0]), init="gaussian")
        >>> net.d, net.m, net.init, float(net.predict(np.ones((1, 2)) / 2)[0])
        (2, 4, 'gaussian', 0.0)
        """
        NetSpec.check_settings(settings, "ExpNet.from_weights", exclude=("dtype",))
        be = get_backend(settings.get("backend", "numpy"), settings.get("device"))
        W, a = _checked_weights(be, W, a)
        dtype = canonical_dtype(be.dtype_of(W) if hasattr(W, "dtype") else np.asarray(W).dtype)
        spec = NetSpec(int(W.shape[0]), int(W.shape[1]), dtype=dtype, **settings)
        return cls.from_spec(spec, be.asarray(W, dtype), be.asarray(a, dtype))

    # ------------------------------------------------------------ settings (read from the spec)
    @property
    def activation(self) -> str:
        """The activation's name (``activations.ACTIVATIONS``)."""
        return self.spec.activation

    @property
    def scaling(self) -> str:
        """ "none" (s = 1, the paper's) or "ntk" (s = 1/sqrt(m))."""
        return self.spec.scaling

    @property
    def scale(self) -> float:
        """Output multiplier alpha (1 unless given): s = alpha * (1 or 1/sqrt(m))."""
        return self.spec.scale

    @property
    def seed(self) -> int:
        """Seed of the initial weights."""
        return self.spec.seed

    @property
    def backend_name(self) -> str:
        """Name of the array backend ("numpy" or "torch")."""
        return self._backend.name

    @property
    def device(self) -> str:
        """Device of the weights ("cpu", "cuda:0", ...)."""
        return self._backend.device

    @property
    def block(self) -> int | None:
        """Neurons per block of the passes (None: chosen by memory)."""
        return self.spec.block

    @property
    def memory_budget(self) -> int | None:
        """Bytes the forward pass may keep for the backward pass (None: the default)."""
        return self.spec.memory_budget

    # ------------------------------------------------------------ properties
    @property
    def d(self) -> int:
        """Input dimension."""
        return int(self.W.shape[0])

    @property
    def m(self) -> int:
        """Width."""
        return int(self.W.shape[1])

    @property
    def dtype(self) -> np.dtype:
        """Floating dtype of the weights, as a NumPy dtype."""
        return np.dtype(self.spec.dtype)

    @property
    def s(self) -> float:
        """Output scale s: alpha for "none", alpha/sqrt(m) for "ntk", alpha = ``scale`` (``NetSpec.s``)."""
        return self.spec.s

    @property
    def backend(self) -> Backend:
        """The array backend the weights live on."""
        return self._backend

    @property
    def act(self) -> Activation:
        """The activation object used by ``ops``."""
        return self.spec.act

    def plan(self, n: int) -> ops.BlockPlan:
        """Blocking of a pass over n points (``NetSpec.plan``)."""
        return self.spec.plan(n)

    # --------------------------------------------------------------- compute
    def _X(self, X: Any) -> Array:
        Xn = check_X(X, dtype=self.dtype, d=self.d)
        return self._backend.asarray(Xn, self.dtype)

    def predict(self, X: Any) -> np.ndarray:
        """F(W, x_i) for each row of X; returns a NumPy array (n,).

        Raises ``ExpOverflowError`` rather than returning inf or NaN.
        """
        return self._forward(self._X(X))

    def _forward(self, Xb: Array) -> np.ndarray:
        with overflow_checked():
            u = ops.forward(self._backend, self.act, Xb, self.W, self.a, self.s, self.plan(Xb.shape[0]))
        return self._backend.to_numpy(u)

    def loss(self, X: Any, y: Any) -> float:
        """L(W) = 1/2 sum_i (F(W, x_i) - y_i)^2 (docs/theory.md section 2), accumulated in float64."""
        Xb = self._X(X)
        yn = check_y(y, int(Xb.shape[0]), dtype=np.dtype(np.float64))
        u = self._forward(Xb)
        r = u.astype(np.float64) - yn
        with overflow_checked():
            value = 0.5 * float(r @ r)
        if not np.isfinite(value):
            raise ExpOverflowError(
                f"the loss 1/2 ||F(W, X) - y||^2 overflows float64 (largest |F - y| = {np.abs(r).max():.3g}); scale the inputs into the unit ball"
            )
        return value

    def gradient(self, X: Any, y: Any) -> np.ndarray:
        """dL/dW, a NumPy array (d, m) (docs/theory.md section 2)."""
        Xn, yn = check_X_y(X, y, dtype=self.dtype, d=self.d)
        be = self._backend
        with overflow_checked():
            _, G = ops.forward_backward(
                be,
                self.act,
                be.asarray(Xn, self.dtype),
                self.W,
                self.a,
                be.asarray(yn, self.dtype),
                self.s,
                self.plan(Xn.shape[0]),
            )
        return be.to_numpy(G)

    # ------------------------------------------------------------ utilities
    def __getstate__(self) -> dict[str, Any]:
        """Pickle weights and settings only; the backend (thread pool, torch module) is per process."""
        state = dict(self.__dict__)
        state.pop("_backend", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.__post_init__()

    def copy(self) -> ExpNet:
        """A deep copy (weights copied, settings shared)."""
        return replace(self, W=self._backend.copy(self.W), a=self._backend.copy(self.a))

    def with_weights(self, W: Array) -> ExpNet:
        """The same network with first-layer weights ``W`` (d, m) (no copy)."""
        if tuple(W.shape) != tuple(self.W.shape):
            raise ValueError(
                f"W must have the shape (d, m) = {tuple(self.W.shape)} of this network, got {tuple(W.shape)}"
            )
        return replace(self, W=W)

    def to(self, backend: str = "numpy", device: str | None = None, dtype: Any = None) -> ExpNet:
        """This network on another backend, device or dtype (weights copied)."""
        be = get_backend(backend, device)
        dt = canonical_dtype(dtype) if dtype is not None else self.dtype
        W = be.asarray(self._backend.to_numpy(self.W), dt)
        a = be.asarray(self._backend.to_numpy(self.a), dt)
        return ExpNet.from_spec(replace(self.spec, dtype=dt, backend=backend, device=be.device), W, a)

    def weights_numpy(self) -> tuple[np.ndarray, np.ndarray]:
        """(W, a) as NumPy arrays."""
        return self._backend.to_numpy(self.W), self._backend.to_numpy(self.a)

    def __repr__(self) -> str:
        return (
            f"ExpNet(d={self.d}, m={self.m}, activation={self.activation!r}, scaling={self.scaling!r}, "
            + (f"scale={self.scale!r}, " if self.scale != 1.0 else "")
            + f"init={self.init!r}, seed={self.seed}, dtype={self.dtype}, backend={self.backend_name!r}, device={self.device!r})"
        )


def _checked_weights(be: Backend, W: Any, a: Any) -> tuple[Any, Any]:
    """W (d, m) and a (m,) of ``ExpNet.from_weights``: arrays (lists become NumPy arrays), of those shapes, finite."""
    W = W if hasattr(W, "shape") and hasattr(W, "dtype") else np.asarray(W, dtype=np.float64)
    a = a if hasattr(a, "shape") and hasattr(a, "dtype") else np.asarray(a, dtype=np.float64)
    if len(W.shape) != 2 or 0 in tuple(W.shape):
        raise ValueError(f"W must be a 2-D array (d, m) with d, m >= 1, got shape {tuple(W.shape)}")
    if tuple(a.shape) != (W.shape[1],):
        raise ValueError(
            f"a must be 1-D with m = {W.shape[1]} entries (one per column of W), got shape {tuple(a.shape)}"
        )
    for name, x in (("W", W), ("a", a)):
        if not be.all_finite(be.asarray(x, canonical_dtype(be.dtype_of(x) if hasattr(x, "dtype") else np.float64))):
            raise ValueError(f"{name} contains NaN or inf; give finite weights")
    return W, a
