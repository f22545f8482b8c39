"""The typer application that every command module registers on."""
import typer

app = typer.Typer(
    name="cnncost",
    help="What a CNN costs and why: MACs, parameters, activations and bytes per layer, checked against PyTorch.",
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback(invoke_without_command=True)
def root(ctx: typer.Context) -> None:
    """What a CNN costs and why: MACs, parameters, activations and bytes per layer, checked against PyTorch."""
    if ctx.invoked_subcommand is None:
        print(ctx.get_help())
