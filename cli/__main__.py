"""`python -m cli ...`: the `kinetoscope` command without its installed script (subprocesses,
machines where the package is not installed)."""
from cli import app

app(prog_name="kinetoscope")
