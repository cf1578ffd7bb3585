"""Generate docs/cli.md from the real ``--help`` of every command.

    python -m volseg.commands._docgen            # rewrite docs/cli.md
    python -m volseg.commands._docgen --check    # exit 1 when docs/cli.md is stale

The help is rendered at a fixed width so the file does not depend on the terminal.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import List, Optional

WIDTH = 100
DEFAULT_PATH = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


def _help(parser: argparse.ArgumentParser) -> str:
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(WIDTH)
    try:
        return parser.format_help().rstrip() + "\n"
    finally:
        if old is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = old


def render_cli_markdown() -> str:
    """The CLI reference as Markdown: ``volseg --help`` then each ``volseg COMMAND --help``."""
    from volseg.cli import COMMANDS, build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    parts = [
        f"<!-- generated with python {sys.version_info[0]}.{sys.version_info[1]} -->",
        "# CLI reference\n",
        "Generated from the real `--help` by `python -m volseg.commands._docgen`; a test fails when",
        "this file and the program disagree. Every command also accepts `--debug` (full tracebacks).\n",
        "```text",
        _help(parser).rstrip(),
        "```\n",
    ]
    for name in COMMANDS:
        parts += [f"## volseg {name}\n", "```text", _help(sub.choices[name]).rstrip(), "```\n"]
    return "\n".join(parts)


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description="write or check docs/cli.md")
    ap.add_argument("--check", action="store_true", help="only compare; exit 1 when stale")
    ap.add_argument("--path", default=str(DEFAULT_PATH), help="target file (default: docs/cli.md)")
    args = ap.parse_args(argv)
    text = render_cli_markdown()
    path = Path(args.path)
    if args.check:
        current = path.read_text() if path.exists() else ""
        if current != text:
            print(f"{path} is stale: run python -m volseg.commands._docgen", file=sys.stderr)
            return 1
        return 0
    from volseg._atomic import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(text)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
