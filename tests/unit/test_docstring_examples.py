"""Every module's docstring examples run (`doctest`), so none goes stale.

Each module of the package is imported and its examples run; one that needs a running
stack marks its examples ``# doctest: +SKIP`` (or shows them as a code block).
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import feature_service

MODULES = sorted(
    m.name for m in pkgutil.walk_packages(feature_service.__path__, feature_service.__name__ + ".")
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(
        module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False
    )
    assert result.failed == 0, f"{result.failed} example(s) of {name} failed (output above)"
