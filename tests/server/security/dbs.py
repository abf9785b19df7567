"""Test databases for the security stores: the gallery storage of the server (which the
stores share in production) on SQLite files and on schemas of the throwaway PostgreSQL
server of the server tests (:mod:`tests.server.pg`)."""

from __future__ import annotations

import uuid


def new_schema(server_url: str) -> str:
    """An empty schema of its own on the test server (much faster than CREATE DATABASE);
    returns a URL whose connections see only that schema."""
    import psycopg

    name = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {name}")
    return server_url + f"?options=-c%20search_path%3D{name}"
