"""The collector and the matcher: a marker they cannot honour, an output that differs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.docs import blocks

ROOT = blocks.ROOT


@pytest.fixture
def page(tmp_path: Path):  # type: ignore[no-untyped-def]
    def write(text: str) -> list[blocks.Block]:
        path = tmp_path / "page.md"
        path.write_text(text, encoding="utf-8")
        return blocks.collect(path)

    return write


def test_kinds_follow_the_language_and_the_marker(page) -> None:  # type: ignore[no-untyped-def]
    found = page(
        "```python\nprint(1)\n```\n\n"
        "<!-- test: compile -- needs a server we do not have -->\n```python\nx\n```\n"
        "```bash\npip install kashq\n```\n"
        "```bash\nkashq queue:size\n```\n"
        "```bash\nKASHQ_CONNECTION=redis .venv/bin/kashq queue:size\n```\n"
        "```bash\nif ! kashq queue:size; then echo no; fi\n```\n"
        "```bash\npython -m kashq --version\n```\n"
        "```bash\n# kashq queue:work, in a comment only\ncd kashq-app  # kashq\n```\n"
        "<!-- test: output -->\n```text\n1\n```\n"
        '```json\n{"a": 1}\n```\n'
        "```ini\n[x]\n```\n"
    )
    assert [b.kind for b in found] == [
        "run", "compile", "show", "run", "run", "run", "run", "show", "compare", "parse", "show",
    ]  # fmt: skip
    assert found[1].reason == "needs a server we do not have"
    assert [b.line for b in found[:2]] == [1, 6]


def test_a_marker_s_extra_lines_are_hidden_setup(page) -> None:  # type: ignore[no-untyped-def]
    (block,) = page(
        "<!-- test: env=A=1 timeout=5\nmailer = print\n-->\n```python\nmailer(1)\n```\n"
    )
    assert block.setup == "mailer = print"
    assert block.env == {"A": "1"}
    assert block.options == {"timeout": "5"}
    (bare,) = page("<!-- test:\nmailer = print\n-->\n```python\nmailer(1)\n```\n")
    assert bare.setup == "mailer = print"
    assert bare.options == {}


@pytest.mark.parametrize(
    "text",
    [
        "<!-- test: compile -->\n```python\nx\n```\n",  # no reason
        "<!-- test: skip -- why -->\n```python\nx\n```\n",  # python is at least compiled
        "<!-- test: stop-after=3 -->\n```python\nx\n```\n",
        "<!-- test: colour=red -->\n```python\nx\n```\n",  # unknown option
        "<!-- test: output -->\n\nsome prose\n\n```text\nx\n```\n",  # not right above a block
        "<!-- test: output -->\n",  # on no block
        "<!-- test: output\n```text\nx\n```\n",  # never closed
    ],
)
def test_a_marker_it_cannot_honour_is_an_error(page, text: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(blocks.MarkerError):
        page(text)


def test_a_snippet_line_stands_for_the_file(page) -> None:  # type: ignore[no-untyped-def]
    (block,) = page('```python\n--8<-- "examples/quickstart.py"\n```\n')
    assert block.code.strip() == (ROOT / "examples" / "quickstart.py").read_text().strip()


WORKER = """\
  2026-11-22 17:27:18 quickstart.SendWelcomeEmail .......................... RUNNING
  2026-11-22 17:27:18 quickstart.SendWelcomeEmail ...................... 0.03ms DONE
"""


def test_times_durations_ids_and_leaders_do_not_count() -> None:
    printed = (
        "  2031-01-02 03:04:05 quickstart.SendWelcomeEmail ...... RUNNING\n"
        "  2031-01-02 03:04:05 quickstart.SendWelcomeEmail ... 12.5ms DONE\n"
    )
    assert blocks.matches(WORKER, printed)


def test_measured_figures_and_process_ids_do_not_count() -> None:
    shown = "│ 10:16 │ completed │ 2 │ duration_ms=0.064 │ vm:25233 │ redis://127.0.0.1:6379/0"
    printed = (
        "│ 10:16 │ completed │ 2 │ duration_ms=1.5 │ ci-host.local:7 │ redis://127.0.0.1:6379/0"
    )
    assert blocks.matches(shown, printed)
    assert not blocks.matches(shown, printed.replace("completed", "started"))
    assert not blocks.matches(shown, printed.replace(":6379/0", ":6380/0"))  # an address counts


def test_a_different_word_count_or_order_is_a_mismatch() -> None:
    assert not blocks.matches(WORKER, WORKER.replace("DONE", "FAIL"))
    assert not blocks.matches(WORKER, "\n".join(reversed(WORKER.splitlines())))
    assert not blocks.matches(WORKER, WORKER + "  one more line\n")
    assert not blocks.matches(WORKER, WORKER.splitlines()[0])


def test_an_ellipsis_line_stands_for_any_lines() -> None:
    expected = "start\n...\nend\n"
    assert blocks.matches(expected, "start\nend\n")
    assert blocks.matches(expected, "start\na\nb\nend\n")
    assert not blocks.matches(expected, "start\na\n")


def test_each_shown_address_has_a_real_one_spelled_alike() -> None:
    from tests.docs import runner

    real = "postgresql+psycopg://postgres@127.0.0.1:5432/test?options=x"
    assert runner.spelled_as("postgresql://localhost/app", real) == (
        "postgresql://postgres@localhost:5432/test?options=x"
    )
    assert runner.spelled_as("redis://127.0.0.1:6379/0", "redis://127.0.0.1:5000/0") == (
        "redis://127.0.0.1:5000/0"
    )
    assert runner.spelled_as("redis://localhost:6379/0", "redis://127.0.0.1:5000/0") == (
        "redis://localhost:5000/0"
    )


def test_real_addresses_read_as_the_shown_ones() -> None:
    assert blocks.matches(
        "redis (redis://127.0.0.1:6379/0)",
        "redis (redis://127.0.0.1:50123/0)",
        {"redis://127.0.0.1:50123/0": "redis://127.0.0.1:6379/0"},
    )


def test_invalid_json_toml_or_yaml_fails_to_parse(page) -> None:  # type: ignore[no-untyped-def]
    good, bad_json, bad_toml, bad_yaml = page(
        '```json\n{"a": 1}\n{"b": 2}\n```\n```json\n{"a": }\n```\n```toml\na = = 1\n```\n'
        "```yaml\na: [1\n```\n"
    )
    blocks.parse(good)  # one document per line is fine
    with pytest.raises(ValueError):
        blocks.parse(bad_json)
    with pytest.raises(ValueError):
        blocks.parse(bad_toml)
    with pytest.raises(ValueError):
        blocks.parse(bad_yaml)
