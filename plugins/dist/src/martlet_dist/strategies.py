"""The ddp strategy: what accelerate needs to know to run it."""

from __future__ import annotations

from typing import Any


class Ddp:
    """DistributedDataParallel through accelerate."""

    def __init__(
        self, ddp_find_unused_parameters: bool = False, ddp_bucket_cap_mb: int = 25, **_: Any
    ) -> None:
        self.find_unused = ddp_find_unused_parameters
        self.bucket_cap_mb = ddp_bucket_cap_mb

    def accelerator_kwargs(self, *, world_size: int, device: str) -> dict[str, Any]:
        from accelerate.utils import DistributedDataParallelKwargs

        handler = DistributedDataParallelKwargs(
            find_unused_parameters=self.find_unused, bucket_cap_mb=self.bucket_cap_mb
        )
        return {"kwargs_handlers": [handler]}
