"""The `openalbert` command line: each subcommand parses its arguments and calls one library function.

No logic lives here beyond argument parsing and turning a user error into one line on stderr.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
import warnings
from collections.abc import Callable

from openalbert import __version__


class CLIError(Exception):
    """An error caused by the user's input: printed as one line, exit status 2."""


# name -> (help, add_arguments(parser), run(args) -> exit status)
Command = tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]
COMMANDS: dict[str, Command] = {}


def command(name: str, help: str, add_arguments: Callable[[argparse.ArgumentParser], None]):
    """Register `run(args) -> int` as the subcommand `name`."""

    def register(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        COMMANDS[name] = (help, add_arguments, run)
        return run

    return register


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="openalbert", description="ALBERT models: inference, training, tools."
    )
    parser.add_argument("--version", action="version", version=f"openalbert {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (help_text, add_arguments, run) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        add_arguments(p)
        p.set_defaults(_run=run)
    return parser


def main(argv: list[str] | None = None) -> int:
    _load_commands()
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help(sys.stderr)
        return 2
    shown = warnings.formatwarning
    warnings.formatwarning = _one_line_warning
    try:
        return args._run(args)
    except KeyboardInterrupt:
        print("openalbert: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except (CLIError, ValueError, FileNotFoundError, OSError, KeyError) as e:
        msg = (
            e.args[0] if isinstance(e, KeyError) and e.args else _os_error(e) if isinstance(e, OSError) else e
        )
        print(f"openalbert {args.command}: error: {msg}", file=sys.stderr)
        return 2
    finally:
        warnings.formatwarning = shown


def _one_line_warning(
    message: Warning | str, category: type[Warning], *args: object, **kwargs: object
) -> str:
    """A warning as the command line prints it: one line, without the library's source path and line."""
    return f"openalbert: warning: {message}\n"


def _os_error(e: OSError) -> str:
    """An error from the file system, worded for a user: the path first, without Python's [Errno n]."""
    if e.errno is None or e.filename is None:
        return str(e)
    if e.errno == errno.EEXIST and os.path.isfile(e.filename):
        return f"{e.filename} is a file; a directory was expected there"
    return f"{e.filename}: {e.strerror}"


def _load_commands() -> None:
    """Import the modules that register subcommands (kept lazy so `--version` stays fast)."""
    import importlib

    for module in _COMMAND_MODULES:
        importlib.import_module(module)


# Modules whose import registers subcommands with @command.
_COMMAND_MODULES: list[str] = [
    "openalbert.commands",
]
