"""Resources: thin ConfigurableResource wrappers of foxlive_core objects.

Each is configured from the YAML path (``FOXLIVE_CONFIG``) and the home
directory (``FOXLIVE_HOME``); secrets come only from ``dg.EnvVar``. Heavy
objects (the simulated market, a loaded model set) are built on first use
and cached per process, never at import time.
"""


import functools
import os

import dagster as dg

from foxlive_core.config import CONFIG_ENV_VAR, HOME_ENV_VAR, FoxliveConfig, load_config
from foxlive_core.engine import TradingEngine
from foxlive_core.brokers import open_broker
from foxlive_core.models.store import ModelSet, ModelStore
from foxlive_core.state import StateStore


@functools.lru_cache(maxsize=4)
def _config(path: str | None, home: str | None) -> FoxliveConfig:
    return load_config(path or None, home=home or None)


@functools.lru_cache(maxsize=4)
def _market(path: str | None, home: str | None):
    from foxlive_core.runtime import make_market

    return make_market(_config(path, home))


class FoxliveConfigResource(dg.ConfigurableResource):
    """The foxlive configuration: YAML path and home directory (default: the environment)."""

    config_path: str = ""
    home: str = ""

    def _key(self) -> tuple[str | None, str | None]:
        return (self.config_path or os.environ.get(CONFIG_ENV_VAR) or None, self.home or os.environ.get(HOME_ENV_VAR) or None)

    def get(self) -> FoxliveConfig:
        return _config(*self._key())


class MarketDataResource(dg.ConfigurableResource):
    """The configured market-data source (simulated by default)."""

    config: dg.ResourceDependency[FoxliveConfigResource]

    def get(self):
        return _market(*self.config._key())


class ModelStoreResource(dg.ConfigurableResource):
    """Training runs under the models root and the active run."""

    config: dg.ResourceDependency[FoxliveConfigResource]

    def store(self) -> ModelStore:
        return ModelStore(self.config.get().models_root)

    def active(self) -> ModelSet:
        return self.store().load_active(self.config.get())


class StateStoreResource(dg.ConfigurableResource):
    """The SQLite state store of every book."""

    config: dg.ResourceDependency[FoxliveConfigResource]

    def get(self) -> StateStore:
        return StateStore(self.config.get().state_path)


class BrokerResource(dg.ConfigurableResource):
    """The broker of the live books: the adapter the foxlive config names (``broker.kind``).

    It holds no credential: an adapter reads its own from the environment
    (foxlive_core.brokers.credentials), so none is in run config or metadata.
    """

    config: dg.ResourceDependency[FoxliveConfigResource]

    def factory(self, store: StateStore, market):
        """book -> Broker; a paper book fills against ``market``'s quotes."""
        cfg = self.config.get()
        return lambda book: open_broker(cfg.broker, book, store.path, market)


def make_engine(config: FoxliveConfigResource, market: MarketDataResource, models: ModelStoreResource,
                state: StateStoreResource, broker: BrokerResource) -> TradingEngine:
    """An engine wired from the resources (the one place the Dagster layer builds one)."""
    store = state.get()
    source = market.get()
    return TradingEngine(config.get(), source, models.active(), store, broker_factory=broker.factory(store, source))


def make_resources(config_path: str = "", home: str = "") -> dict:
    """Every resource, configured from ``config_path``/``home`` or, when empty, from
    ``FOXLIVE_CONFIG``/``FOXLIVE_HOME`` at run time."""
    config = FoxliveConfigResource(config_path=config_path, home=home)
    return {
        "foxlive": config,
        "market": MarketDataResource(config=config),
        "models": ModelStoreResource(config=config),
        "state": StateStoreResource(config=config),
        "broker": BrokerResource(config=config),
    }
