"""SQLAlchemy's asyncio engine, without the ORM its package brings along.

Importing anything from `sqlalchemy.ext.asyncio` runs the package's `__init__`, which
imports its ORM sessions and with them all of `sqlalchemy.orm`: 6.7 MiB in every worker
for classes the gateway, which speaks SQLAlchemy Core, never uses. So the package is
registered bare, and only its `engine` module loads. A name the bare package lacks
(`AsyncSession`, say) runs the real `__init__` on first use: whatever else imports the
package still finds all of it.
"""

from __future__ import annotations

import importlib.util
import pkgutil
import sys
import types
from typing import Any

_PACKAGE = "sqlalchemy.ext.asyncio"


def _register_bare_package() -> None:
    if _PACKAGE in sys.modules:
        return
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or spec.loader is None or spec.submodule_search_locations is None:
        return  # not the package we know: import it whole
    package = types.ModuleType(_PACKAGE)
    package.__spec__ = spec
    package.__path__ = list(spec.submodule_search_locations)
    package.__file__ = spec.origin
    package.__package__ = _PACKAGE
    loader = spec.loader
    submodules = {module.name for module in pkgutil.iter_modules(package.__path__)}

    def whole(name: str) -> Any:
        if name in submodules:  # not loaded yet: the import system loads it next
            raise AttributeError(name)
        del package.__dict__["__getattr__"]
        loader.exec_module(package)
        return getattr(package, name)

    package.__dict__["__getattr__"] = whole
    sys.modules[_PACKAGE] = package


_register_bare_package()

from sqlalchemy.ext.asyncio.engine import (  # noqa: E402  (the package is registered first)
    AsyncConnection,
    AsyncEngine,
    create_async_engine,
)

__all__ = ["AsyncConnection", "AsyncEngine", "create_async_engine"]
