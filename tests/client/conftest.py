"""The SDK tests use the server tests' API keys."""

from tests.server.conftest import key_hashes, keys  # noqa: F401
