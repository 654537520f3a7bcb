"""A third party's plugin for the cross-package tests: a model loader, a chat template, a
dataset source and a callback, each with an option of its own (``acme-parts``, installed into
a fake site by the ``acme_parts`` fixture). It imports no Martlet plugin, so it can stand in for
martlet-hf (loader, template) and martlet-data (source)."""

PLUGIN = """
    from martlet import hookimpl
    from martlet.records import (
        CallbackRecord, DatasetSourceRecord, ModelLoaderRecord, TemplateRecord,
    )

    MARTLET_API = 1

    @hookimpl
    def martlet_model_loaders():
        yield ModelLoaderRecord(
            name="acme-loader", impl="acme_parts_impl:Loader", sources=("hf-dir",),
            summary="Hugging Face folders, saying so.", options="acme_parts_options:LoaderOptions",
        )

    @hookimpl
    def martlet_templates():
        yield TemplateRecord(
            name="acme-chat", impl="acme_parts_impl:Chat",
            summary="role: text lines after a prefix.", options="acme_parts_options:ChatOptions",
        )

    @hookimpl
    def martlet_dataset_sources():
        yield DatasetSourceRecord(
            name="acme-rows", impl="acme_parts_impl:Rows", schemes=("acme-rows",),
            summary="N made-up chats.", options="acme_parts_options:RowsOptions",
        )

    @hookimpl
    def martlet_callbacks():
        yield CallbackRecord(
            name="acme-log", impl="acme_parts_impl:Log",
            summary="Metrics to a file.", options="acme_parts_options:LogOptions",
        )
"""

OPTIONS = """
    from dataclasses import dataclass

    from martlet.config import option


    @dataclass(kw_only=True)
    class LoaderOptions:
        \"\"\"Acme's loader\"\"\"

        acme_note: str = option("none", help="A note the loader prints.")


    @dataclass(kw_only=True)
    class ChatOptions:
        \"\"\"Acme's chat lines\"\"\"

        acme_prefix: str = option(">", help="What starts each line.")


    @dataclass(kw_only=True)
    class RowsOptions:
        \"\"\"Acme's made-up chats\"\"\"

        acme_answer: str = option("yes", help="What the assistant answers.")


    @dataclass(kw_only=True)
    class LogOptions:
        \"\"\"Acme's metrics file\"\"\"

        acme_log_name: str = option("acme-log.jsonl", help="The file, in the output directory.")
"""

IMPL = """
    import json
    from pathlib import Path

    from martlet.errors import ConfigError


    class Loader:
        def can_load(self, source):
            return False  # only when named

        def load(self, source, *, acme_note="none", torch_dtype="float32", **options):
            import torch
            from transformers import AutoModelForCausalLM

            print(f"acme-loader: note={acme_note}", flush=True)
            dtype = getattr(torch, torch_dtype) if torch_dtype != "auto" else torch.float32
            model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype)
            return model, self.load_tokenizer(source)

        def load_tokenizer(self, source, **options):
            from transformers import AutoTokenizer

            return AutoTokenizer.from_pretrained(source)


    class Chat:
        def __init__(self, tokenizer, *, acme_prefix=">", system=None, max_length=None,
                     truncation="delete", loss_scope="all", **unknown):
            if unknown:
                raise ConfigError(f"acme-chat takes no option {sorted(unknown)[0]!r}")
            print(f"acme-chat: prefix={acme_prefix}", flush=True)
            self.tokenizer, self.prefix, self.max_length = tokenizer, acme_prefix, max_length

        def render(self, messages, *, add_generation_prompt=False, **_):
            text = "".join(f"{self.prefix}{m['role']}: {m['content']}\\n" for m in messages)
            return text + (f"{self.prefix}assistant: " if add_generation_prompt else "")

        def encode(self, messages, **_):
            ids, labels = [], []
            for m in messages:
                tokens = self.tokenizer.encode
                head = tokens(f"{self.prefix}{m['role']}: ", add_special_tokens=False)
                body = tokens(f"{m['content']}\\n", add_special_tokens=False)
                ids += head + body
                said = m["role"] == "assistant"
                labels += [-100] * len(head) + (body if said else [-100] * len(body))
            if self.max_length and len(ids) > self.max_length:
                return None
            return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels}


    class Rows:
        def can_read(self, spec, *, hub=None):
            return spec.startswith("acme-rows:")

        def read(self, spec, *, streaming=False, acme_answer="yes", **options):
            print(f"acme-rows: answer={acme_answer}", flush=True)
            n = int(spec.split(":", 1)[1])
            return [
                {"messages": [{"role": "user", "content": f"question {i}"},
                              {"role": "assistant", "content": acme_answer}]}
                for i in range(n)
            ]


    class Log:
        def __init__(self, output_dir=".", acme_log_name="acme-log.jsonl", **_):
            self.path = Path(output_dir) / acme_log_name

        def on_log(self, step, metrics):
            with self.path.open("a") as f:
                f.write(json.dumps({"step": step, **metrics}) + "\\n")

        def on_end(self):
            pass
"""


def install(site) -> None:
    """Add the ``acme-parts`` distribution to ``site`` (a ``FakeSite``)."""
    site.dist(
        "acme-parts",
        "0.3",
        entry_points={"acme-parts": "acme_parts"},
        modules={"acme_parts": PLUGIN, "acme_parts_options": OPTIONS, "acme_parts_impl": IMPL},
    )
