"""The service layer: every API operation over storage, registry and projection."""

from .core import BundleBody, Service, TypeHint

__all__ = ["BundleBody", "Service", "TypeHint"]
