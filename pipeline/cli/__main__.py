"""`python -m enja.pipeline.cli`: the `enja` command, for subprocesses that name the interpreter."""
import sys

from enja.pipeline.cli import main

sys.exit(main())
