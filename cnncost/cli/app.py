"""The typer application that every command module registers on."""
import typer

app = typer.Typer(
    name="cnncost",
    help="What a CNN costs and why: MACs, parameters, activations and bytes per layer, checked against PyTorch.",
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback(invoke_without_command=True)
def root(ctx: typer.Context,
         version: bool = typer.Option(False, "--version", help="Print the version and exit.")) -> None:
    """What a CNN costs and why: MACs, parameters, activations and bytes per layer, checked against PyTorch."""
    if version:
        from cnncost import __version__
        from cnncost.output import to_stdout
        to_stdout(f"cnncost {__version__}\n")
        raise typer.Exit()
    if ctx.invoked_subcommand is None:
        from cnncost.output import to_stdout
        to_stdout(ctx.get_help() + "\n")
