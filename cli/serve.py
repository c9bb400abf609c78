"""`kinetoscope serve`: the HTTP API, with an embedded worker unless --redis-url is given.

Its flags are the settings object's fields (cli/options.py): every limit and knob of the server
can be set here, by `KINETOSCOPE_<FIELD>`, or left at its default. Torch-free: it imports only the
server's runtime."""
from __future__ import annotations

import typer

from cli.options import with_settings


@with_settings()
def serve(settings) -> None:
    """Run the HTTP API (with an embedded worker unless --redis-url is given). Each flag overrides
    its setting; the others come from the KINETOSCOPE_<FIELD> environment and the defaults."""
    from server.api.app import PortInUse
    from server.api.app import serve as run
    from server.catalogue import find_repositories

    try:
        find_repositories(settings.model_repository)  # a missing model is one line, before anything starts
        run(settings)
    except (PortInUse, FileNotFoundError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2)
