"""Fixtures for the ``libvirt`` tier: libvirt's in-process test driver, ``test:///default``.

Its state lives in the opening process and is rebuilt when the last connection to it closes,
so every test that opens (and closes) its own connection starts from the same host: 2 NUMA
cells x 8 CPUs and one running domain named ``test`` with 2 vCPUs.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import libvirt
import pytest

from numaportal.virt.connection import open_connection
from numaportal.virt.domains import Domain, lookup_domain

TEST_URI = "test:///default"
TEST_DOMAIN = "test"
TEST_DOMAIN_UUID = "6695eb01-f6a4-8304-79aa-97f2502e193f"


@pytest.fixture
def fresh_test_driver() -> Iterator[None]:
    """Make "every test starts from the default host" true.

    The test driver keeps its state while any connection to it is alive, and a domain object
    holds a reference to its connection. An earlier test's exception traceback (a reference
    cycle through its frames) can keep one alive until the garbage collector runs; run it.
    (Not autouse: a full collection per test would triple the tier's run time.)
    """
    gc.collect()
    yield
    gc.collect()


@pytest.fixture
def conn(fresh_test_driver: None) -> Iterator[libvirt.virConnect]:
    connection = open_connection(TEST_URI)
    yield connection
    connection.close()


@pytest.fixture
def dom(conn: libvirt.virConnect) -> Domain:
    return lookup_domain(conn, TEST_DOMAIN)


class Lying:
    """A domain whose read-back calls return something else than what was set."""

    def __init__(self, dom: libvirt.virDomain, **overrides: Any) -> None:
        self._dom = dom
        self._overrides = overrides

    def __getattr__(self, name: str) -> Any:
        if name in self._overrides:
            return self._overrides[name]
        return getattr(self._dom, name)

    @classmethod
    def domain(cls, dom: Domain, **overrides: Any) -> Domain:
        """A handle on *dom* whose libvirt object lies with *overrides*."""
        return Domain.of(cls(dom.virdomain, **overrides))  # type: ignore[arg-type]
