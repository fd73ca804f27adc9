"""Concepts every pattern shares, each in exactly one place: the stable hash, table
helpers, atomic files, the retry policy, the circuit breaker, the rate limiter, the
combine contract and the bad-record / dead-letter path."""
