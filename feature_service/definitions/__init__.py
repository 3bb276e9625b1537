"""Feature definitions: the YAML model, its loader and the resolved registry."""

from feature_service.definitions.loader import load_definitions
from feature_service.definitions.registry import (
    DefinitionError,
    DefinitionIssue,
    DerivedFeature,
    Entity,
    Feature,
    FeatureService,
    FeatureView,
    Registry,
    ServiceExpression,
    Source,
)

__all__ = [
    "DefinitionError",
    "DefinitionIssue",
    "DerivedFeature",
    "Entity",
    "Feature",
    "FeatureService",
    "FeatureView",
    "Registry",
    "ServiceExpression",
    "Source",
    "load_definitions",
]
