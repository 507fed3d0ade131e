"""The docs' generated reference: every setting and every command, read from the code.

Used as an mkdocs hook (``hooks:`` in ``mkdocs.yml``): a page holding the line
``<!-- generated: settings -->`` or ``<!-- generated: commands -->`` gets the
table of every field of :class:`kashq.Settings`, or every ``kashq`` command
with each of its arguments and options, from the Typer app itself. Nothing
is copied by hand, so the pages cannot drift from the code.
"""

from __future__ import annotations

import re
import types
import typing
from typing import Any

SETTINGS_MARKER = "<!-- generated: settings -->"
COMMANDS_MARKER = "<!-- generated: commands -->"
_RICH_TAG = re.compile(r"\[/?[a-z ]*\]")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ").strip()


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin is typing.Literal:
        return "one of " + ", ".join(f"`{a}`" for a in args)
    if origin in (typing.Union, types.UnionType):
        named = [_type_name(a) for a in args if a is not type(None)]
        return " or ".join(named) + (" or none" if type(None) in args else "")
    if origin is list:
        return f"list of {_type_name(args[0])}"
    return getattr(annotation, "__name__", str(annotation))


def _default(value: Any) -> str:
    if value is None or value in ([], ""):
        return "(none)"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float) and value.is_integer():
        return f"`{int(value)}`"
    return f"`{value}`"


def settings_markdown() -> str:
    """A table of every setting: variable, TOML key, type, default, meaning."""
    from kashq.config import ENV_PREFIX, Settings

    rows = [
        "| variable | TOML key | type | default | meaning |",
        "|---|---|---|---|---|",
    ]
    for name, field in Settings.model_fields.items():
        default = field.get_default(call_default_factory=True)
        rows.append(
            f"| `{ENV_PREFIX}{name.upper()}` | `{name}` | {_cell(_type_name(field.annotation))} "
            f"| {_default(default)} | {_cell(field.description or '')} |"
        )
    return "\n".join(rows) + "\n"


def _command_section(name: str, command: Any, ctx: Any) -> list[str]:
    help_text = _RICH_TAG.sub("", command.help or "").strip()
    lines = [f"### `kashq {name}`", ""]
    lines += [help_text, ""] if help_text else []
    usage = " ".join(command.collect_usage_pieces(ctx))
    lines += ["```text", f"kashq {name} {usage}".rstrip(), "```", ""]
    rows = ["| argument / option | meaning | default |", "|---|---|---|"]
    for param in command.params:
        if param.param_type_name == "argument":
            label = f"`{param.human_readable_name}`"
            meaning = getattr(param, "help", None) or ""
            default = "required" if param.required else _param_default(param)
        else:
            if param.hidden:
                continue
            label = ", ".join(f"`{opt}`" for opt in (*param.opts, *param.secondary_opts))
            if not param.is_flag:
                label += f" `{_cell(param.make_metavar(ctx))}`"
            meaning = param.help or ""
            default = _param_default(param)
        rows.append(f"| {label} | {_cell(_RICH_TAG.sub('', meaning))} | {default} |")
    rows.append("| `--help` | Show the command's help and exit. | |")
    return [*lines, *rows, ""]


def _param_default(param: Any) -> str:
    if getattr(param, "is_flag", False):
        return "off" if not param.default else "on"
    if param.default is None or param.default in ((), []):
        return ""
    return f"`{param.default}`"


def commands_markdown() -> str:
    """A section per ``kashq`` command: what it does, its usage, every argument and option."""
    import typer

    from kashq.cli import app

    group = typer.main.get_command(app)  # Typer's own copy of click: no isinstance on click's
    ctx = group.context_class(group, info_name="kashq")
    out: list[str] = []
    for name in group.list_commands(ctx):  # type: ignore[attr-defined]
        command = group.get_command(ctx, name)  # type: ignore[attr-defined]
        if command is None or command.hidden:
            continue
        sub = command.context_class(command, info_name=name, parent=ctx)
        out += _command_section(name, command, sub)
    return "\n".join(out)


def render(markdown: str) -> str:
    """The page with its generated markers replaced."""
    if SETTINGS_MARKER in markdown:
        markdown = markdown.replace(SETTINGS_MARKER, settings_markdown())
    if COMMANDS_MARKER in markdown:
        markdown = markdown.replace(COMMANDS_MARKER, commands_markdown())
    return markdown


def on_page_markdown(markdown: str, **_: Any) -> str:
    """The mkdocs hook."""
    return render(markdown)


if __name__ == "__main__":  # print both, to read them without building the site
    print(settings_markdown())
    print(commands_markdown())
