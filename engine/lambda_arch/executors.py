"""The Lambda executors behind ``engine.run``: "inline" (in this process) and "ray"."""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.errors import SpecError
from engine.lambda_arch.spec import LambdaArchitecture
from engine.runtime.run import RunOptions

if TYPE_CHECKING:
    from engine.lambda_arch.deployment import LambdaDeployment


class InlineExecutor:
    """Every layer in this process, no Ray: in-process shards, the speed stage applied
    synchronously, the batch job on the inline MapReduce executor (the oracle)."""

    def start(self, spec: LambdaArchitecture, options: RunOptions) -> "LambdaDeployment":
        """Open the deployment on ``spec.directory`` (replaying the log since its batch view)."""
        from engine.lambda_arch.backends import InlineBackend
        from engine.lambda_arch.deployment import LambdaDeployment

        _check(spec, options)
        return LambdaDeployment(spec, InlineBackend(spec))


class RayExecutor:
    """View shards as actors queried with ``engine.scatter_gather``, the speed layer an
    ``engine.pipeline`` pipeline, the batch job on Ray MapReduce (``engine.connect()`` first)."""

    def start(self, spec: LambdaArchitecture, options: RunOptions) -> "LambdaDeployment":
        """Open the deployment on ``spec.directory``; raises ``NotConnectedError`` without Ray."""
        from engine.lambda_arch.backends import RayBackend
        from engine.lambda_arch.deployment import LambdaDeployment

        _check(spec, options)
        return LambdaDeployment(spec, RayBackend(spec))


def _check(spec: object, options: RunOptions) -> None:
    if not isinstance(spec, LambdaArchitecture):
        raise SpecError(f"the Lambda executors run a LambdaArchitecture, got {type(spec).__name__}")
    if options.resume or options.chaos is not None:
        raise SpecError("a Lambda deployment takes neither resume (reopening its directory always continues) "
                        "nor chaos options")


EXECUTORS = {"inline": InlineExecutor, "ray": RayExecutor}
