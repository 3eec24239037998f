"""`tensorzero.toml` -> pydantic models."""

from tensorzero_ray.config.loader import ConfigError, load_config
from tensorzero_ray.config.root import Config

__all__ = ["Config", "ConfigError", "load_config"]
