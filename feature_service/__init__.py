"""feature-service: an event-driven streaming feature store.

`from feature_service import FeatureStore` gives the Python SDK (`feature_service.sdk`);
it is imported on first use so that `import feature_service` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["FeatureStore", "__version__"]

if TYPE_CHECKING:
    from feature_service.sdk import FeatureStore


def __getattr__(name: str) -> Any:
    if name == "FeatureStore":
        from feature_service.sdk import FeatureStore

        return FeatureStore
    raise AttributeError(f"module 'feature_service' has no attribute {name!r}")
