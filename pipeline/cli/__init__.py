"""The `enja` command: run the pipeline, follow its history, serve, roll back and translate."""
from __future__ import annotations

from collections.abc import Sequence

from enja.pipeline.cli import arguments, commands, terminal


def main(argv: Sequence[str] | None = None) -> int:
    """Parses the command line (no TensorFlow yet, so the quieting is in time) and runs it."""
    args = arguments.build_parser().parse_args(argv)
    if not args.verbose:
        terminal.quiet_library_noise()
    return commands.HANDLERS[args.command](args)
