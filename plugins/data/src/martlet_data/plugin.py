"""Registers martlet-data: dataset sources, the dataset registry and `martlet dataset`.

Imports only martlet (and this package's plain-data catalog); the readers, `datasets`,
`pyarrow` and torch are imported when something is read.
"""

from martlet import hookimpl
from martlet.records import CommandRecord, DatasetSourceRecord

from martlet_data.catalog import DATASETS

MARTLET_API = 1


@hookimpl
def martlet_dataset_sources():
    yield DatasetSourceRecord(
        name="local",
        impl="martlet_data.sources:LocalSource",
        suffixes=(".jsonl", ".json", ".csv", ".parquet", ".txt"),
        capabilities={"streaming"},
        summary="Local .jsonl, .json, .csv, .parquet and .txt files, and folders of them.",
    )
    yield DatasetSourceRecord(
        name="hf",
        impl="martlet_data.sources:HfSource",
        schemes=("hf", "huggingface"),
        aliases=("huggingface",),
        capabilities={"streaming", "hub"},
        summary="Hugging Face dataset ids (org/name or hf::name) through `datasets`.",
    )
    yield DatasetSourceRecord(
        name="modelscope",
        impl="martlet_data.sources:ModelScopeSource",
        schemes=("ms", "modelscope"),
        aliases=("ms",),
        capabilities={"streaming", "hub"},
        summary="ModelScope dataset ids (ms::org/name) through `modelscope` (optional extra).",
    )
    yield DatasetSourceRecord(
        name="named",
        impl="martlet_data.sources:NamedSource",
        capabilities={"streaming"},
        summary="Registered datasets by name: the built-in registry and embedded datasets.",
    )


@hookimpl
def martlet_datasets():
    yield from DATASETS


@hookimpl
def martlet_commands():
    yield CommandRecord(
        name="dataset",
        impl="martlet_data.cli:dataset",
        aliases=("datasets",),
        summary="List, inspect and prepare datasets (martlet dataset list|info|prepare).",
    )
