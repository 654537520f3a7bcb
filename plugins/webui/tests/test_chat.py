"""The Chat tab's model: loaded through the core's loaders and engine, answering piece by piece;
what cannot be loaded is an error that says what to do."""

from __future__ import annotations

import pytest
from martlet.errors import MartletError
from martlet_webui.chat import Chat


def test_a_model_answers_streamed(martlet_manager, tiny_model_dir):
    martlet_manager("hf", "engine-pt")
    chat = Chat()
    messages = [{"role": "user", "content": "Hello"}]
    generation = {"max_new_tokens": 8, "temperature": 0.0, "top_p": 1.0}
    answers = list(chat.stream(str(tiny_model_dir), "", messages, generation))
    assert len(answers) > 1, answers  # piece by piece, not one block at the end
    assert all(b.startswith(a) for a, b in zip(answers, answers[1:], strict=False))
    assert answers[-1].strip()
    engine = chat.engine(str(tiny_model_dir), "")
    assert list(chat.stream(str(tiny_model_dir), "", messages, generation))  # loaded once
    assert chat.engine(str(tiny_model_dir), "") is engine
    assert chat.loaded == (str(tiny_model_dir), "")


def test_what_cannot_be_loaded_says_so(martlet_manager, tmp_path):
    martlet_manager("hf", "engine-pt")
    chat = Chat()
    with pytest.raises(MartletError, match="nothing to chat with") as nothing:
        chat.engine(" ", "")
    assert "choose a model" in nothing.value.fix
    with pytest.raises(MartletError, match="not found"):
        chat.engine("", str(tmp_path / "no-such-run"))
    (tmp_path / "plain").mkdir()
    with pytest.raises(MartletError, match="is not a Martlet run directory"):
        chat.engine("", str(tmp_path / "plain"))
