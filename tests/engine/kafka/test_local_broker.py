"""The embedded broker's address file: written by a worker, found by commands run next to it,
ignored when nothing listens there any more."""

from __future__ import annotations

import socket
from pathlib import Path

from microseg.engine.kafka.local_broker import ADDRESS_FILE, find, forget, remember


def test_a_listening_address_is_found_and_a_stale_one_is_not(tmp_path: Path) -> None:
    assert find(tmp_path) is None, "no file"
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        bootstrap = f"127.0.0.1:{listener.getsockname()[1]}"
        path = remember(tmp_path / "data", bootstrap)
        assert path == tmp_path / "data" / ADDRESS_FILE
        assert find(tmp_path / "data") == bootstrap
    assert find(tmp_path / "data") is None, "the worker is gone: nothing listens there"


def test_forget_removes_only_its_own_address(tmp_path: Path) -> None:
    remember(tmp_path, "127.0.0.1:1111")
    forget(tmp_path, "127.0.0.1:2222")
    assert (tmp_path / ADDRESS_FILE).exists(), "another worker's address is left alone"
    forget(tmp_path, "127.0.0.1:1111")
    assert not (tmp_path / ADDRESS_FILE).exists()
    forget(tmp_path, "127.0.0.1:1111")  # nothing there: no error


def test_garbage_in_the_file_is_no_address(tmp_path: Path) -> None:
    (tmp_path / ADDRESS_FILE).write_text("not an address\n")
    assert find(tmp_path) is None
