"""`kinetoscope`: the one command line (serve, worker, generate, train, eval, export, bench, ...).

It sits on top of server/, models/ and export/, one module per subcommand. Each subcommand
imports what it needs when it runs, so `kinetoscope serve` works in the runtime install that has
no torch; only the settings object (pydantic) is read up front, for the serve and worker flags.
"""
from __future__ import annotations

import typer

from cli import benchmarks, evaluate, export, gallery, generate, serve, train, worker

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Kinetoscope: serve masked generative video transformers over HTTP.")
app.command("serve")(serve.serve)
app.command("worker")(worker.worker)
app.command("generate")(generate.generate)
app.command("train")(train.train)
app.command("eval")(evaluate.evaluate)
app.add_typer(export.app, name="export")
app.command("bench")(benchmarks.bench)
app.command("bench-runtime")(benchmarks.bench_runtime)
app.command("gallery")(gallery.gallery)
