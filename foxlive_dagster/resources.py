"""Resources: thin ConfigurableResource wrappers of foxlive_core objects, chosen per deployment.

Each is configured from the YAML path (``FOXLIVE_CONFIG``) and the home
directory (``FOXLIVE_HOME``); secrets come only from ``dg.EnvVar``. Heavy
objects (the simulated market, a loaded model set) are built on first use
and cached per process, never at import time.

``FOXLIVE_DEPLOYMENT`` names the resource set (:func:`make_resources`):

- ``local`` (the default): the configuration file and home as given, else
  from the environment, else the embedded defaults (the simulated market);
- ``production``: both come from ``dg.EnvVar`` (the UI shows the variables'
  names, each run's process reads their values) and must be set, and the market
  must be real data (``market.source: historical``): a production book never
  trades the simulated market (:func:`check_deployment`).
"""


import functools
import os

import dagster as dg

from foxlive_core.config import CONFIG_ENV_VAR, HOME_ENV_VAR, FoxliveConfig, load_config
from foxlive_core.errors import ConfigError
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


DEPLOYMENT_ENV = "FOXLIVE_DEPLOYMENT"
DEPLOYMENTS = ("local", "production")


def deployment_name(choice: str | None = None) -> str:
    """The deployment ``choice`` names (default: ``$FOXLIVE_DEPLOYMENT``, else ``local``)."""
    name = (choice if choice is not None else os.environ.get(DEPLOYMENT_ENV, "")).strip() or "local"
    if name not in DEPLOYMENTS:
        raise ConfigError(f"{DEPLOYMENT_ENV}={name!r} is not a deployment: use one of {', '.join(DEPLOYMENTS)}")
    return name


def check_deployment(cfg: FoxliveConfig, deployment: str) -> None:
    """Raise ConfigError when ``cfg`` may not run in ``deployment`` (see the module docstring)."""
    if deployment == "production" and cfg.market.source == "simulated":
        raise ConfigError(
            f"{DEPLOYMENT_ENV}=production trades real data, but {cfg.source_path or 'the configuration'} has "
            "market.source 'simulated'; set market.source: historical (with market.historical.path), or run "
            f"the simulated market with {DEPLOYMENT_ENV}=local"
        )


def _required_env(deployment: str, config_path: str, home: str) -> None:
    given = {CONFIG_ENV_VAR: config_path, HOME_ENV_VAR: home}
    missing = [name for name, value in given.items() if not value and not os.environ.get(name)]
    if missing:
        what = {CONFIG_ENV_VAR: "the YAML file", HOME_ENV_VAR: "the directory of the state and models"}
        raise ConfigError(
            f"{DEPLOYMENT_ENV}={deployment} takes the configuration file and the home directory from the "
            f"environment, but {' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set; set "
            + " and ".join(f"{name} to {what[name]}" for name in missing)
        )


class FoxliveConfigResource(dg.ConfigurableResource):
    """The foxlive configuration: YAML path and home directory (default: the environment), and the
    deployment whose rules it must meet."""

    config_path: str = ""
    home: str = ""
    deployment: str = "local"

    def _key(self) -> tuple[str | None, str | None]:
        return (self.config_path or os.environ.get(CONFIG_ENV_VAR) or None, self.home or os.environ.get(HOME_ENV_VAR) or None)

    def get(self) -> FoxliveConfig:
        cfg = _config(*self._key())
        check_deployment(cfg, self.deployment)
        return cfg


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


def make_resources(config_path: str = "", home: str = "", deployment: str = "local") -> dict:
    """Every resource of ``deployment``, configured from ``config_path``/``home`` or, when empty, from
    ``FOXLIVE_CONFIG``/``FOXLIVE_HOME`` at run time (in production: ``dg.EnvVar``, which must be set)."""
    if deployment == "production":
        _required_env(deployment, config_path, home)
        config = FoxliveConfigResource(config_path=config_path or dg.EnvVar(CONFIG_ENV_VAR),
                                       home=home or dg.EnvVar(HOME_ENV_VAR), deployment=deployment)
    else:
        config = FoxliveConfigResource(config_path=config_path, home=home, deployment=deployment)
    return {
        "foxlive": config,
        "market": MarketDataResource(config=config),
        "models": ModelStoreResource(config=config),
        "state": StateStoreResource(config=config),
        "broker": BrokerResource(config=config),
    }
