"""Imports every built-in model module so that each registers itself."""
