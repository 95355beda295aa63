"""``rmt scenarios``: the ready scenarios, each with its description and the installed paths of its locustfile and
definition, so that plain Locust finds them wherever rmt is installed::

    locust -f $(rmt scenarios --path memory_growth) --host 127.0.0.1:8000
    cp $(rmt scenarios --path memory_growth.json) ./mine.json          # a definition to make your own

``--path NAME`` prints one path: NAME's locustfile (``any``: the locustfile of any definition, given with
``--rmt-definition FILE``), or with ``.json`` its definition. Exit 0, or 2 with one ``rmt: error:`` line for an
unknown name.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rmt.core.errors import ConfigError
from rmt.run.definition import ANY_LOCUSTFILE, LOCUSTFILES, ScenarioDef, available, load_definition


def register(sub: Any) -> None:
    """Add ``rmt scenarios``."""
    p = sub.add_parser("scenarios", help="list the ready scenarios with the paths of their locustfiles and definitions",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--path", metavar="NAME", help="print only this scenario's locustfile (NAME.json: its definition)")
    p.set_defaults(func=cmd_scenarios)


def own_locustfile(definition: ScenarioDef) -> Path | None:
    """The locustfile of a ready scenario; None for one that only ``rmt run`` runs (the campaign)."""
    return None if definition.scenarios else definition.locustfile


def scenario_path(name: str) -> Path:
    """The installed path ``--path NAME`` prints; ConfigError naming the choices when there is none."""
    if name in ("any", "any.py"):
        return ANY_LOCUSTFILE
    stem = name.removesuffix(".json").removesuffix(".py")
    if stem not in available():
        raise ConfigError(f"unknown scenario {name!r}: use one of {', '.join(available())} or any")
    if name.endswith(".json"):
        return LOCUSTFILES / name
    locustfile = own_locustfile(load_definition(stem))
    if locustfile is None:
        raise ConfigError(f"{stem} has no locustfile (it runs with rmt run {stem}): ask for {stem}.json, its "
                          "definition")
    return locustfile


def cmd_scenarios(args: Any) -> int:
    """Print one path, or every scenario with its description and paths."""
    if args.path:
        print(scenario_path(args.path))
        return 0
    for name in available():
        definition = load_definition(name)
        print(f"{name}: {definition.description}")
        locustfile = own_locustfile(definition)
        if locustfile is not None:
            print(f"  locustfile  {locustfile}")
        print(f"  definition  {definition.path}")
    print(f"any: the locustfile of any definition (locust -f {ANY_LOCUSTFILE} --rmt-definition FILE)")
    return 0
