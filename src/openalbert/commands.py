"""Subcommands of the `openalbert` CLI, each a thin wrapper over one library function.

Heavy imports happen inside the run functions so `openalbert --help` stays fast.
"""

from __future__ import annotations

import argparse

from openalbert.cli import command
