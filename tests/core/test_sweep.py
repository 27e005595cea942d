"""Replay sweeps: the sweep file's variants checked by name, and each variant's replay equal to a replay
of the same configuration written out in full."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

from foxlive_core.cli import main
from foxlive_core.config import HOME_ENV_VAR, _deep_merge, load_config
from foxlive_core.errors import ConfigError
from foxlive_core.models.store import ModelStore
from foxlive_core.state import StateStore
from foxlive_core.sweep import load_sweep
from tests.conftest import ACTIVE, SMALL_TRAINING, SMALL_UNIVERSE, write_config


def _with_sweep(tmp_path, variants, text: str | None = None):
    path = write_config(tmp_path / "cfg", SMALL_TRAINING)
    (path.parent / "sweep.yaml").write_text(text if text is not None else yaml.safe_dump({"variants": variants}))
    return load_config(path, home=tmp_path / "home")


def test_no_sweep_file_means_no_variants(tmp_path):
    assert load_sweep(load_config(write_config(tmp_path / "cfg"), home=tmp_path / "home")) == ()


@pytest.mark.parametrize("variants, message", [
    ([{"name": "Bad-Name", "overrides": {}}], "name 'Bad-Name' must be lower-case"),
    ([{"name": "a", "overrides": {}}, {"name": "a", "overrides": {}}], "name 'a' is used twice"),
    ([{"name": "a", "overrides": {"models": {"families": ["ridge"]}}}], "overrides models, which every variant shares"),
    ([{"name": "a", "overrides": {"sizing": {"gross_targett": 0.2}}}], "sweep variant 'a'.*gross_targett"),
    ([{"name": "a", "overrides": {"sizing": {"gross_target": -1.0}}}], "sweep variant 'a'.*sizing.gross_target"),
    ([{"name": "a", "overides": {}}], "expected keys name and overrides"),
    ([], "non-empty list under 'variants'"),
])
def test_bad_variants_are_refused_by_name(tmp_path, variants, message):
    with pytest.raises(ConfigError, match=message):
        load_sweep(_with_sweep(tmp_path, variants))


def test_bad_yaml_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_sweep(_with_sweep(tmp_path, None, text="variants: [name: {"))


def test_sweep_replays_each_variant_as_its_own_configuration(tmp_path, monkeypatch, small_run, capsys):
    cfg0, _, result = small_run
    symbols = list(cfg0.symbols[:SMALL_UNIVERSE])
    home = tmp_path / "home"
    monkeypatch.setenv(HOME_ENV_VAR, str(home))
    path = write_config(tmp_path / "cfg", SMALL_TRAINING, symbols=symbols)
    stricter = _deep_merge(ACTIVE, {"arbitration": {"threshold_base_bps": 3.0}})
    (path.parent / "sweep.yaml").write_text(yaml.safe_dump({"variants": [
        {"name": "active", "overrides": ACTIVE}, {"name": "stricter", "overrides": stricter},
        {"name": "silent", "overrides": {"arbitration": {"threshold_base_bps": 10_000.0}}}]}))
    shutil.copytree(result.run_dir, home / "models" / result.run_id)
    cfg = load_config(path)
    ModelStore(cfg.models_root).activate(result.run_id, by="pytest", reason="sweep test", cfg=cfg)

    out_json = tmp_path / "sweep.json"
    assert main(["--config", str(path), "sweep", "--start", "2025-05-01", "--end", "2025-05-01",
                 "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    assert "sweep of 3 variant(s)" in out and "sweep_active" in out and "sweep_silent" in out
    swept = json.loads(out_json.read_text())
    assert swept["run_id"] == result.run_id
    runs = swept["variants"]
    assert runs["silent"]["orders"] == 0 and runs["silent"]["pnl"] == 0.0
    assert runs["active"]["orders"] > 0 and runs["stricter"]["orders"] > 0
    assert runs["active"]["pnl"] != runs["stricter"]["pnl"]  # the hurdle changed what was traded

    # Each variant equals `foxlive replay` of a configuration file with its overrides written in.
    for name, overrides in (("active", ACTIVE), ("stricter", stricter)):
        full = write_config(tmp_path / f"cfg_{name}", _deep_merge(SMALL_TRAINING, overrides), symbols=symbols)
        assert main(["--config", str(full), "replay", "--start", "2025-05-01", "--end", "2025-05-01",
                     "--book", f"full_{name}", "--quiet"]) == 0
        assert main(["--config", str(full), "report", "--book", f"full_{name}", "--json",
                     str(tmp_path / f"{name}.json")]) == 0
        plain = json.loads((tmp_path / f"{name}.json").read_text())
        assert {k: v for k, v in plain.items() if k != "book"} == {k: v for k, v in runs[name].items() if k != "book"}

    assert main(["--config", str(path), "sweep", "--start", "2025-05-01", "--end", "2025-05-01",
                 "--variant", "nope"]) == 2
    assert "sweep variant(s) nope not in" in capsys.readouterr().err

    # A halted variant book refuses the whole sweep before any variant replays (which would lift its halt).
    store = StateStore(cfg.state_path)
    committed = list(store.cycles("sweep_active")["committed_at"])
    assert main(["--config", str(path), "halt", "--book", "sweep_stricter", "--reason", "review",
                 "--operator", "bob"]) == 0
    assert main(["--config", str(path), "sweep", "--start", "2025-05-01", "--end", "2025-05-01"]) == 2
    assert "replay book 'sweep_stricter' is reducing (review)" in capsys.readouterr().err
    assert list(store.cycles("sweep_active")["committed_at"]) == committed
    assert store.trading_state("sweep_stricter") == ("reducing", "review")
