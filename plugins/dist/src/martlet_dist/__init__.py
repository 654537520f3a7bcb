"""martlet-dist: the ddp and fsdp parallel strategies."""
