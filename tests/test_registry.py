import pytest

from faceobfuscator.errors import ConfigError
from faceobfuscator.registry import Registry


def test_registry_names_duplicates_and_unknowns():
    reg: Registry[int] = Registry("widget")
    reg.add("b", 2)
    reg.add("a", 1)
    assert reg.names() == ["a", "b"] and reg.get("b") == 2
    with pytest.raises(ConfigError, match="widget 'a' is already registered"):
        reg.add("a", 3)
    assert reg.get("a") == 1  # the first registration stands
    with pytest.raises(ConfigError, match=r"unknown widget 'c'; known: \['a', 'b'\]"):
        reg.get("c")
