"""Ports for the local stack's services come from outside the kernel's ephemeral range."""

from __future__ import annotations

import socket

import pytest

from fedfaas.devstack.localstack import procs


def test_free_ports_avoid_the_ephemeral_range_and_are_bindable_with_their_twin() -> None:
    low = procs._ephemeral_low()
    if low is None:
        pytest.skip("no readable ephemeral port range here")
    for _ in range(20):
        port = procs.free_port()
        assert port >= procs.PORT_FLOOR and port + 10000 < low
        for p in (port, port + 10000):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind(("127.0.0.1", p))


def test_without_a_known_range_the_kernel_chooses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(procs, "_ephemeral_low", lambda: None)
    assert 0 < procs.free_port() < 55000
