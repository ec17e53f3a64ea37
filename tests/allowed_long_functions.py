"""The functions of src/expreg allowed past the size limits of tests/test_architecture.py, each with its reason.

At most five, by qualified name (module.function, module.Class.method).
Each is a debt with an owner, not a licence: shrink it and strike it here.
"""

ALLOWED: dict[str, str] = {}
