"""The one execution contract: ``run(spec, executor)`` returns a ``Handle`` of one shape
for every pattern; the supervisor owns the engine's pooled processes."""
