"""Every choice made by name, declared once, with one error message.

A fixed choice is a ``Choice``: a ``str`` enum whose members compare equal
to (and serialise as) their string values, so ``Init.coupled == "coupled"``
and a configuration holding either hashes the same. A choice that grows by
registration (the activations, one object each, see ``activations``; the
backends, see ``backends.BACKENDS``) is a ``Registry``. Both reject an unknown value with the message of
``unknown_choice``::

    init='uniform' is not known; choose one of 'coupled', 'gaussian'

The command line (``cli._options``) takes its option types from here, the
experiment configurations their ``Literal`` field types (``literal``), and
the library its checks (``Choice.parse``, ``Registry.__getitem__``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from enum import Enum
from typing import Any, Generic, Literal, TypeVar

T = TypeVar("T")
C = TypeVar("C", bound="Choice")


def unknown_choice(name: str, value: Any, allowed: Iterable[str], error: type[Exception] = ValueError) -> Exception:
    """The error for ``name=value`` outside ``allowed``: "name=value is not known; choose one of 'a', 'b'"."""
    return error(f"{name}={value!r} is not known; choose one of {', '.join(map(repr, allowed))}")


def literal(values: Iterable[str]) -> Any:
    """``typing.Literal`` of these strings: the field type of a choice in a pydantic model."""
    return Literal[tuple(values)]


class Choice(str, Enum):
    """A fixed set of named values; subclasses declare one member per value.

    Members are strings: ``str(member)`` and JSON give the value. The class
    keyword ``option`` is the argument name that messages use
    (``class Init(Choice, option="init")``, ``Init.option == "init"``).
    """

    option: str

    def __init_subclass__(cls, option: str = "choice", **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.option = option

    def __str__(self) -> str:
        return str(self.value)

    def __repr__(self) -> str:
        """The value's repr, so that messages written ``f"{x!r}"`` read the same for a member and its string."""
        return repr(self.value)

    @classmethod
    def values(cls) -> tuple[str, ...]:
        """The declared values, in declaration order."""
        return tuple(str(member.value) for member in cls)

    @classmethod
    def parse(cls: type[C], value: Any, name: str | None = None) -> C:
        """The member whose value is ``value`` (a member or its string), else ``ValueError`` naming ``name``."""
        if isinstance(value, cls):
            return value
        if isinstance(value, str):
            try:
                return cls(value)
            except ValueError:
                pass
        raise unknown_choice(name or cls.option, value, cls.values())

    @classmethod
    def check(cls, value: Any, name: str | None = None) -> str:
        """``value`` as its plain string, after ``parse``."""
        return str(cls.parse(value, name).value)

    @classmethod
    def literal(cls) -> Any:
        """``typing.Literal`` of the values (a pydantic field type)."""
        return literal(cls.values())


class Init(Choice, option="init"):
    """Initialisation of the weights (``initialisation``): paired neurons or independent ones."""

    coupled = "coupled"
    gaussian = "gaussian"


class Scaling(Choice, option="scaling"):
    """Output scale s of F = s sum_r a_r sigma(<w_r, x>): 1 ("none", the paper's) or 1/sqrt(m) ("ntk")."""

    none = "none"
    ntk = "ntk"


class DType(Choice, option="dtype"):
    """Floating-point precision of the weights and of the blocked passes."""

    float64 = "float64"
    float32 = "float32"


class LabelKind(Choice, option="label_kind"):
    """Synthetic labels (``data.labels``): uniform on [-1, 1] or random signs."""

    uniform = "uniform"
    sign = "sign"


class Registry(Mapping[str, T], Generic[T]):
    """Named objects of one kind (e.g. the activations), in registration order.

    A read-only mapping name -> object; ``registry[name]`` of an unknown name
    raises ``ValueError`` with the ``unknown_choice`` message.
    """

    def __init__(self, option: str) -> None:
        self.option = option
        self._items: dict[str, T] = {}

    def register(self, name: str, item: T) -> T:
        """Add ``item`` under ``name`` (a new name); returns ``item``."""
        if name in self._items:
            raise ValueError(f"{self.option} {name!r} is already registered")
        self._items[name] = item
        return item

    def unregister(self, name: str) -> None:
        """Remove ``name`` (for tests that register an object of their own)."""
        del self._items[name]

    def __getitem__(self, name: Any) -> T:
        key = name.value if isinstance(name, Enum) else name
        if isinstance(key, str) and key in self._items:
            return self._items[key]
        raise unknown_choice(self.option, name, self._items)

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, name: object) -> bool:
        key = name.value if isinstance(name, Enum) else name
        return isinstance(key, str) and key in self._items

    def names(self) -> tuple[str, ...]:
        """The registered names, in registration order."""
        return tuple(self._items)

    def check(self, name: Any) -> str:
        """``name`` as its plain string if registered, else the ``unknown_choice`` error."""
        self[name]
        return str(name.value if isinstance(name, Enum) else name)

    def as_choice(self, class_name: str) -> type[Choice]:
        """The names registered now as a ``Choice`` enum (a command-line option type)."""
        enum = Choice(class_name, {name: name for name in self._items})  # type: ignore[call-overload]
        enum.option = self.option
        return enum

    def literal(self) -> Any:
        """``typing.Literal`` of the names registered now (a pydantic field type)."""
        return literal(self._items)
