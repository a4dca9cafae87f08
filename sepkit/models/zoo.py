"""Imports every built-in model module so that each registers itself."""

from sepkit.models import convtasnet, dprnn, sepformer  # noqa: F401
