"""Architectures by name: one factory (`create_model`), one small module per family."""

from generation.archs.registry import UnknownArchError, arch_names, create_model

__all__ = ["UnknownArchError", "arch_names", "create_model"]
