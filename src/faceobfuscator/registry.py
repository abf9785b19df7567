"""Named factories (schemes, backbones, attacks): a taken name raises on registration and
an unknown name lists the known ones, so every registry of the project behaves alike."""

from __future__ import annotations

from typing import Generic, TypeVar

from faceobfuscator.errors import ConfigError

__all__ = ["Registry"]

F = TypeVar("F")


class Registry(Generic[F]):
    """Factories of one kind (``kind`` names it in errors) by name."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._factories: dict[str, F] = {}

    def add(self, name: str, factory: F) -> None:
        if name in self._factories:
            raise ConfigError(f"{self.kind} {name!r} is already registered")
        self._factories[name] = factory

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._factories)

    def get(self, name: str) -> F:
        if name not in self._factories:
            raise ConfigError(f"unknown {self.kind} {name!r}; known: {self.names()}")
        return self._factories[name]
