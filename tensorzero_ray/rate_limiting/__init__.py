"""Rate limits across every Gateway replica: one ledger of token buckets (a Ray actor on a
cluster), from which each replica leases capacity in blocks, so most requests are counted
without leaving the replica."""

from tensorzero_ray.rate_limiting.ledger import BucketLedger, shared_ledger
from tensorzero_ray.rate_limiting.limiter import RateLimited, RateLimiter, RateLimitMissingMaxTokens, Reservation

__all__ = ["BucketLedger", "RateLimitMissingMaxTokens", "RateLimited", "RateLimiter", "Reservation", "shared_ledger"]
