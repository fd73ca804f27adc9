"""Reliability toolkit: retry with backoff, circuit breaker, dead-letter store, rate limiter.

Small components used by the pipelines and MapReduce; each is usable on its own.
"""

from engine.reliability.circuit_breaker import CircuitBreaker, CircuitBreakerRegistry
from engine.reliability.dead_letter import DeadLetterStore, ReplayReport, check_stage
from engine.reliability.errors import (
    CircuitOpenError,
    RateLimitedError,
    TransientError,
    is_transient,
)
from engine.reliability.rate_limit import RateLimiter, TokenBucket, throttle_batches
from engine.reliability.retry import RetryPolicy

__all__ = [
    "CircuitBreaker",
    "CircuitBreakerRegistry",
    "CircuitOpenError",
    "DeadLetterStore",
    "RateLimitedError",
    "RateLimiter",
    "ReplayReport",
    "RetryPolicy",
    "TokenBucket",
    "TransientError",
    "check_stage",
    "is_transient",
    "throttle_batches",
]
