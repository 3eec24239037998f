"""Who may call the gateway: API keys in TensorZero's format, stored hashed in ClickHouse."""

from tensorzero_ray.auth.api_keys import ApiKey, ApiKeys, Unauthenticated

__all__ = ["ApiKey", "ApiKeys", "Unauthenticated"]
