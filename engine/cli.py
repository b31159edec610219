"""Command line entry point (filled in below)."""
import typer

app = typer.Typer(no_args_is_help=True, add_completion=False, help="microseg: behavioral-DNA micro-segmentation")


@app.callback()
def _root() -> None:
    """microseg command line."""


def main() -> None:
    app()
