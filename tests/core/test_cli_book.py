"""The book commands of the CLI: halt modes, status with the trading state and the ledger check."""

from __future__ import annotations

import sqlite3

import pytest

from foxlive_core.cli import main
from foxlive_core.config import HOME_ENV_VAR
from tests.conftest import write_config


def test_halt_modes_and_status(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(HOME_ENV_VAR, str(tmp_path / "home"))
    path = str(write_config(tmp_path / "cfg"))

    def run(*args):
        return main(["--config", path, *args])

    assert run("halt", "--book", "b", "--reason", "check the fills", "--operator", "alice") == 0
    assert "book b reducing (only risk-reducing orders): check the fills" in capsys.readouterr().out
    assert run("halt", "--book", "b", "--reason", "broker outage", "--operator", "bob", "--mode", "stop") == 0
    assert "book b halted (no orders at all): broker outage" in capsys.readouterr().out
    assert run("halt", "--book", "b", "--reason", "just reduce", "--mode", "reducing") == 0
    assert "book b was already halted: broker outage" in capsys.readouterr().out
    assert run("status", "--book", "b") == 0
    out = capsys.readouterr().out
    assert "trading: halted (no orders at all)" in out and "halted: YES: broker outage (by bob" in out
    assert "ledger: 1 entries; cash and positions equal their fold" in out
    with sqlite3.connect(tmp_path / "home" / "state.sqlite") as conn:  # the stored book edited behind the ledger
        conn.execute("UPDATE book_state SET cash = cash - 1 WHERE book = 'b'")
    assert run("status", "--book", "b") == 0
    out = capsys.readouterr().out
    assert "the stored book DIFFERS from their fold" in out and "cash: ledger 100,000.00, stored state 99,999.00" in out
    assert run("resume", "--book", "b", "--operator", "carol", "--reason", "broker back") == 0
    assert run("status", "--book", "b") == 0
    assert "trading: active (trades freely)" in capsys.readouterr().out
    with pytest.raises(SystemExit) as refused:
        run("halt", "--book", "b", "--reason", "x", "--mode", "pause")
    assert refused.value.code == 2 and "invalid choice: 'pause'" in capsys.readouterr().err
