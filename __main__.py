"""ConvectHub on bare metal: the Pulumi program's entry point (see stacks/program.py)."""

from stacks.program import run

run()
