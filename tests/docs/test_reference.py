"""The generated reference pages name every setting and every command option."""

from __future__ import annotations

import importlib.util
import re
from types import ModuleType

import typer

from kashq.cli import app
from kashq.config import Settings
from tests.docs.blocks import ROOT


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "docs_reference", ROOT / "scripts" / "docs_reference.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_setting_has_a_row_with_its_default_and_meaning() -> None:
    table = _generator().settings_markdown()
    for name, field in Settings.model_fields.items():
        (row,) = [line for line in table.splitlines() if f"`KASHQ_{name.upper()}`" in line]
        assert f"`{name}`" in row
        assert field.description and field.description.split()[0] in row


def test_every_command_and_option_is_listed() -> None:
    text = _generator().commands_markdown()
    group = typer.main.get_command(app)
    ctx = group.context_class(group, info_name="kashq")
    names = group.list_commands(ctx)  # type: ignore[attr-defined]
    assert len(names) >= 19
    for name in names:
        section = text.split(f"### `kashq {name}`\n", 1)[1].split("\n### ", 1)[0]
        command = group.get_command(ctx, name)  # type: ignore[attr-defined]
        for param in command.params:
            if param.param_type_name == "option" and not param.hidden:
                for opt in param.opts:
                    assert re.search(rf"`{re.escape(opt)}`", section), (name, opt)


def test_the_pages_hold_the_markers_the_hook_fills() -> None:
    gen = _generator()
    assert gen.SETTINGS_MARKER in (ROOT / "docs" / "configuration.md").read_text()
    assert gen.COMMANDS_MARKER in (ROOT / "docs" / "cli.md").read_text()
    rendered = gen.render((ROOT / "docs" / "configuration.md").read_text())
    assert gen.SETTINGS_MARKER not in rendered and "`KASHQ_PREFETCH`" in rendered
