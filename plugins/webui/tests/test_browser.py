"""The web UI in a real browser: `martlet web-ui` started as users start it (with a local
plugin file, `--plugin`), driven by headless Chromium through Playwright — train a tiny model
and watch its loss plot, stop a run, chat with the trained run, export it, evaluate a model,
and see a plugin's tuner bring its own fields. The page talks to nothing but the UI's own
address.

Needs Debian's `chromium` and `playwright` (PyPI; its own browser download is not used):
skipped, saying so, where either is missing. With MARTLET_WEBUI_SCREENSHOTS=DIR the tests save
a screenshot of each tab there (`plugins/webui/tools/screenshots.py` writes docs/webui/).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no `chromium` on PATH (apt-get install chromium)"
)
SHOTS = os.environ.get("MARTLET_WEBUI_SCREENSHOTS")
#: the longest any one action may take here (a tiny model on two CPU cores)
ACTION_S = 150

PLUGIN = '''
    """A third party's tuner, loaded with `martlet --plugin acme_plugin.py web-ui`."""
    from dataclasses import dataclass

    from martlet import hookimpl
    from martlet.config import option
    from martlet.records import TunerRecord


    @dataclass(kw_only=True)
    class NormOptions:
        """Acme's norm tuner: only the final norm trains"""

        acme_scale: float = option(1.0, help="Multiply the norm's weight by this first.")


    class NormTuner:
        pass


    @hookimpl
    def martlet_tuners():
        yield TunerRecord(
            name="acme-norm",
            impl=f"{__name__}:NormTuner",
            options=f"{__name__}:NormOptions",
            summary="Trains the final norm only.",
        )
'''


class UI:
    def __init__(self, url: str, work: Path, plugin: Path) -> None:
        self.url, self.work, self.plugin = url, work, plugin


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    """`martlet --plugin acme_plugin.py web-ui` on a free port, in a folder with a tiny model
    (``tiny-model``); its output under ./output there."""
    from martlet_sdk.tiny import tiny_model_dir

    work = tmp_path_factory.mktemp("webui")
    tiny_model_dir(work / "tiny-model")
    plugin = work / "acme_plugin.py"
    plugin.write_text(textwrap.dedent(PLUGIN))
    port = _free_port()
    script = Path(sys.executable).with_name("martlet")
    log = open(work / "ui.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [str(script), "--plugin", plugin.name, "web-ui", "--port", str(port)],
        cwd=work,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 120
    try:
        while True:
            if process.poll() is not None:
                pytest.fail(f"the UI exited: {(work / 'ui.log').read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(url, timeout=5) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the UI did not answer: {(work / 'ui.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield UI(url, work, plugin)
    finally:
        os.killpg(process.pid, 15)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
        log.close()


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, ui):
    """The app's page; afterwards, every request it made went to the UI's own address."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(30_000)
    hosts: set[str] = set()
    page.on("request", lambda request: hosts.add(request.url.split("/")[2]))
    page.on("websocket", lambda ws: hosts.add(ws.url.split("/")[2]))
    page.goto(ui.url)
    page.wait_for_selector("#train-start")
    yield page
    page.close()
    assert hosts == {ui.url.split("/")[2]}, f"the page reached outside the UI: {hosts}"


def choose(page, elem_id: str, text: str) -> None:
    """Type ``text`` into a dropdown (a choice, or a value of one's own) and take it."""
    box = page.locator(f"#{elem_id} input")
    box.fill(text)
    box.press("Enter")
    page.locator("body").click(position={"x": 5, "y": 5})  # closes the list


def fill(page, elem_id: str, value: str) -> None:
    """Type ``value`` into a text or number field, and leave it."""
    field = page.locator(f"#{elem_id} input, #{elem_id} textarea").first
    field.fill(value)
    field.press("Tab")


def command_line(page, prefix: str, shows: str, timeout: float = 15) -> str:
    """The tab's command line (blanks collapsed), once it holds ``shows``: it follows the
    form a moment after each change."""
    deadline = time.monotonic() + timeout
    while True:
        text = page.locator(f"#{prefix}-command-line .cm-content").inner_text()
        line = " ".join(text.split())
        if shows in line:
            return line
        if time.monotonic() > deadline:
            raise AssertionError(f"the command line never showed {shows!r}: {line!r}")
        page.wait_for_timeout(200)


def wait_for(page, selector: str, *words: str, timeout: float = ACTION_S) -> str:
    """The text of ``selector`` once it holds one of ``words`` (a failure shows the log)."""
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = page.locator(selector).inner_text()
        if any(w in text for w in words):
            return text
        page.wait_for_timeout(250)
    raise AssertionError(f"{selector} never showed {words}: {text!r}")


def shot(page, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.wait_for_timeout(500)
        page.screenshot(path=str(Path(SHOTS) / f"{name}.png"), full_page=True)


def open_tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()
    page.locator(f"#tab-{name.lower()}").wait_for(state="visible")


def test_train_stop_chat_and_export(page, ui):
    # Train: the form, the command line it shows, the run and its loss plot
    choose(page, "train-model", "tiny-model")
    choose(page, "train-dataset", "sample-sft#16")
    fill(page, "train-main-max_steps", "6")
    fill(page, "train-main-logging_steps", "1")
    expected = (
        "martlet --plugin acme_plugin.py sft --model tiny-model --dataset 'sample-sft#16' "
        "--tuner lora --output-dir output/sft-1 --max-steps 6 --logging-steps 1"
    )
    assert command_line(page, "train", expected).endswith(expected)
    page.locator("#train-start").click()
    status = wait_for(page, "#train-status", "finished", "failed", "why:")
    assert "finished" in status and "step 6/6" in status, page.locator("#train-log").inner_text()
    run = ui.work / "output" / "sft-1"
    assert (run / "config.yaml").is_file() and (run / "adapter_model.safetensors").is_file()
    assert "output/sft-1" in status
    page.locator("#train-loss").get_by_text("train", exact=True).wait_for()  # the plot's legend
    assert page.locator("#train-output input, #train-output textarea").input_value() == (
        "output/sft-2"  # the next run gets a folder of its own
    )
    shot(page, "train")

    # Stop: a long run ends at the next step as a run directory
    fill(page, "train-main-max_steps", "500")
    page.locator("#train-start").click()
    stopped = ui.work / "output" / "sft-2"
    deadline = time.monotonic() + ACTION_S
    while not (stopped / "metrics.jsonl").is_file():
        assert time.monotonic() < deadline, page.locator("#train-log").inner_text()
        page.wait_for_timeout(250)
    page.locator("#train-stop").click()
    status = wait_for(page, "#train-status", "stopped", "finished", "failed")
    assert status.startswith("stopped"), status
    assert (stopped / "config.yaml").is_file() and (stopped / "adapter_model.safetensors").is_file()

    # Chat with the first run, streamed
    open_tab(page, "Chat")
    choose(page, "chat-run", "output/sft-1")
    fill(page, "chat-generation-max_new_tokens", "16")
    shown = "infer --adapters output/sft-1 --max-new-tokens 16 --temperature 0.7 --top-p 0.9"
    assert command_line(page, "chat", shown).endswith(shown)
    message = page.locator("#chat-message textarea")
    message.fill("Hello, who are you?")
    message.press("Enter")
    wait_for(page, "#chat-status", "answered", "why:")
    assert "answered by output/sft-1" in page.locator("#chat-status").inner_text()
    answer = page.locator("#chat-bot [data-testid='bot']").last.inner_text()
    assert answer.strip(), "no answer appeared"
    shot(page, "chat")

    # Export the first run, merged
    open_tab(page, "Export")
    choose(page, "export-run", "output/sft-1")
    shown = "export --adapters output/sft-1 --merge-lora --output-dir output/export-1"
    assert command_line(page, "export", shown).endswith(shown)
    page.locator("#export-start").click()
    status = wait_for(page, "#export-status", "finished", "failed", "why:")
    assert "finished" in status, page.locator("#export-log").inner_text()
    assert (ui.work / "output" / "export-1" / "model.safetensors").is_file()
    assert "model.safetensors" in page.locator("#export-files").inner_text()
    shot(page, "export")


def test_evaluate(page, ui):
    from martlet.manager import get_manager

    if get_manager().registry.find("commands", "eval") is None:
        pytest.skip("martlet eval (martlet-eval) is not installed")
    open_tab(page, "Evaluate")
    choose(page, "eval-model", "tiny-model")
    fill(page, "eval-main-limit", "8")
    shown = "eval --model tiny-model --tasks sample-mcq --output-dir output/eval-1 --limit 8"
    assert command_line(page, "eval", shown).endswith(shown)
    page.locator("#eval-start").click()
    status = wait_for(page, "#eval-status", "finished", "failed", "why:")
    assert "finished" in status, page.locator("#eval-log").inner_text()
    scores = page.locator("#eval-scores").inner_text()
    assert "sample-mcq" in scores and "acc" in scores
    assert (ui.work / "output" / "eval-1" / "results.json").is_file()
    shot(page, "evaluate")


def test_a_plugins_tuner_brings_its_fields_and_errors_are_shown(page, ui):
    scale = page.locator("#train-group-tuners-acme-norm-acme_scale")
    rank = page.locator("#train-group-tuners-lora-lora_rank")
    assert rank.is_visible() and not scale.is_visible()  # lora is the default tuner
    choose(page, "train-model", "tiny-model")
    choose(page, "train-tuner", "acme-norm")
    scale.wait_for(state="visible")
    assert "Multiply the norm's weight by this first." in scale.inner_text()  # its help
    rank.wait_for(state="hidden")
    fill(page, "train-group-tuners-acme-norm-acme_scale", "2")
    line = command_line(page, "train", "--acme-scale 2.0")
    assert "--tuner acme-norm" in line and line.endswith("--acme-scale 2.0"), line
    # no dataset: the command's own error, at once, in the status box
    page.locator("#train-start").click()
    error = wait_for(page, "#train-status", "why:", "fix:", "finished", timeout=30)
    assert "dataset" in error, error
