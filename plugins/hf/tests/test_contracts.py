"""martlet-hf's records against the SDK contracts, through the installed entry point."""

import pytest
from martlet_hf.plugin import TEMPLATES
from martlet_sdk.contracts import (
    CommandContract,
    ModelContract,
    ModelLoaderContract,
    TemplateContract,
)


class _Hf:
    @pytest.fixture
    def plugin(self):
        return "hf"


class TestModels(_Hf, ModelContract):
    @pytest.fixture(
        params=[
            "smollm2-135m-instruct",
            "qwen2.5-7b-instruct",
            "llama3.1-8b-instruct",
            "gemma-3-4b-it",
            "phi-4",
            "deepseek-r1-distill-qwen-7b",
            "glm4-9b-chat",
            "internlm3-8b-instruct",
            "yi-1.5-9b-chat",
            "mistral-7b-instruct-v0.3",
        ]
    )
    def record_name(self, request):
        return request.param


class TestModelLoaders(_Hf, ModelLoaderContract):
    @pytest.fixture(params=["hf", "gguf"])
    def record_name(self, request):
        return request.param


class TestTemplates(_Hf, TemplateContract):
    @pytest.fixture(params=sorted(TEMPLATES))
    def record_name(self, request):
        return request.param


class TestCommands(_Hf, CommandContract):
    @pytest.fixture(params=["model", "download"])
    def record_name(self, request):
        return request.param
