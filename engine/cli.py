"""Command line entry point (filled in below)."""
import typer

from microseg.engine.fit import fit_command
from microseg.engine.simulator import simulate_command

app = typer.Typer(no_args_is_help=True, add_completion=False, help="microseg: behavioral-DNA micro-segmentation")


@app.callback()
def _root() -> None:
    """microseg command line."""


app.command("simulate")(simulate_command)


app.command("fit")(fit_command)


def main() -> None:
    app()
