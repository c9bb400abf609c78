"""Command-line options generated from `server.settings.Settings`, so every setting has its flag
and no second, hand-written parser can drift from the settings object.

Each field `some_name` becomes `--some-name` (help from the field's description, type from its
annotation); list fields are repeatable and also take the singular (`--api-key` for `api_keys`);
bool fields are `--x/--no-x`. Only the flags given on the command line override; everything else
comes from the `KINETOSCOPE_*` environment and the defaults, as pydantic-settings reads them.
"""
from __future__ import annotations

import functools
import inspect
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Callable, Iterable, Optional

import typer
from pydantic import ValidationError
from pydantic.fields import FieldInfo

from server.settings import Settings  # pydantic only: no engines, no torch


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _base_type(annotation: Any) -> Any:
    """`X | None` -> X; a list stays a list."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _default_text(field: FieldInfo) -> str | None:
    default = field.get_default(call_default_factory=True)
    if default is None or default == [] or default == "":
        return None
    return str(default)


def flags_for(name: str, field: FieldInfo, aliases: Iterable[str] = ()) -> list[str]:
    """The option names of one setting (the first is `--field-name`)."""
    base = _base_type(field.annotation)
    names = [flag(name), *aliases]
    if typing.get_origin(base) is list and name.endswith("s"):
        names.append(flag(name[:-1]))  # --api-key for api_keys: one value per flag
    if base is bool:
        return [f"{n}/--no-{n[2:]}" for n in names]
    return names


def _parameter(name: str, field: FieldInfo, aliases: Iterable[str]) -> inspect.Parameter:
    base = _base_type(field.annotation)
    if typing.get_origin(base) is list:
        kind: Any = list[str]
    elif base in (bool, int, float):
        kind = base
    else:  # str, Path and anything else: pydantic parses the text (so "" can mean "none" for a folder)
        kind = str
    option = typer.Option(*flags_for(name, field, aliases), help=field.description or name,
                          show_default=_default_text(field) or False,
                          metavar="PATH" if base is Path else None)
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None,
                             annotation=Annotated[Optional[kind], option])


def settings_error(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = flag(str(first["loc"][0])) if first.get("loc") else "settings"
    return f"{where}: {first['msg']}; got {first.get('input')!r}"


def with_settings(*, exclude: Iterable[str] = (), aliases: dict[str, list[str]] | None = None
                  ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorates a command `fn(settings, **own_options)`: its options become its own plus one per
    Settings field (but `exclude`), and it is called with the Settings those flags make."""
    aliases = aliases or {}
    fields = {n: f for n, f in Settings.model_fields.items() if n not in set(exclude)}

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        own = [p for p in inspect.signature(fn, eval_str=True).parameters.values() if p.name != "settings"]
        clash = {p.name for p in own} & set(fields)
        if clash:
            raise TypeError(f"{fn.__name__}: options {sorted(clash)} are Settings fields already")

        @functools.wraps(fn)
        def command(settings_ctx: typer.Context, **kwargs: Any) -> Any:
            given = {}
            for name in fields:
                value = kwargs.pop(name, None)
                source = settings_ctx.get_parameter_source(name)
                if source is not None and source.name == "COMMANDLINE":
                    given[name] = list(value) if isinstance(value, (list, tuple)) else value
            try:
                settings = Settings(**given)
            except ValidationError as exc:
                typer.echo(f"error: {settings_error(exc)}", err=True)
                raise typer.Exit(2)
            return fn(settings, **kwargs)

        context = inspect.Parameter("settings_ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)
        params = [context, *own] + [_parameter(n, f, aliases.get(n, ())) for n, f in fields.items()]
        command.__signature__ = inspect.Signature(params)  # what typer reads the options from
        command.__annotations__ = {}  # the signature carries them
        return command

    return decorate
