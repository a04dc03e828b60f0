"""``distill recipe``: list, show and compare the shipped recipes (or recipe files)."""

from __future__ import annotations

import typer

from distill.cli.root import app, echo_rich

recipe_app = typer.Typer(no_args_is_help=True, help="Recipes: one TOML file with a table per stage; `distill run RECIPE` runs one.")
app.add_typer(recipe_app, name="recipe")


@recipe_app.command("list")
def list_command() -> None:
    """Print the shipped recipes, each with the first line of its header comment."""
    from distill.pipeline.recipe import recipe_text, shipped_recipes

    for name in shipped_recipes():
        first = recipe_text(name)[1].splitlines()[0].lstrip("# ")
        typer.echo(f"{name:<10} {first.split(': ', 1)[-1]}")


@recipe_app.command("show")
def show_command(recipe: str = typer.Argument(..., help="A shipped recipe name or a .toml file.")) -> None:
    """Print a recipe's TOML (redirect it into a file to edit it: `distill recipe show default > my.toml`)."""
    from distill.pipeline.recipe import load_recipe, recipe_text

    load_recipe(recipe)  # refuse a file with errors here rather than when it is run
    typer.echo(recipe_text(recipe)[1], nl=False)


@recipe_app.command("diff")
def diff_command(a: str = typer.Argument(..., help="Recipe name or file."), b: str = typer.Argument(..., help="Recipe name or file.")) -> None:
    """Print every dotted key whose value differs between two recipes."""
    from distill.pipeline.recipe import load_recipe, recipe_diff

    diff = recipe_diff(load_recipe(a), load_recipe(b))
    if not diff:
        typer.echo(f"{a} and {b} train the same thing")
        return
    from distill.core.tables import aligned_table

    echo_rich(aligned_table(["key", a, b], [[key, repr(va), repr(vb)] for key, va, vb in diff], right_from=1))
