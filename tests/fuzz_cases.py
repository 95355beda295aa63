"""Bad-input properties shared by ``tests/test_fuzz_input.py`` (few examples, in ``make test``) and
``benchmarks/fuzz_inputs.py`` (thousands, with counts for docs/reliability.md).

Each property takes hypothesis-drawn input and asserts rmt's contract for bad input: the command ends with exit 0
(accepted), 3 (findings/failed verdicts), 4 (incomplete run) or 2 with exactly one ``rmt: error: ...`` line; never a
traceback (any other exception escapes the property and fails it), never a partly written output.
"""

from __future__ import annotations

import contextlib
import io
import json
import random
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from rmt.check.spec import CHECKS, build_checks, merge_specs, parse_spec
from rmt.cli import build_parser, main
from rmt.core.errors import ConfigError
from rmt.core.resources import SCENARIOS
from rmt.run.definition import load_definition

ROOT = Path(__file__).resolve().parent.parent
SEED_RUN = ROOT / "tests" / "data" / "run_small"
"""A real run directory (``rmt run fairness --workers 2 --duration 5`` on probe, rl_high, rl_low; traces cut to 300)."""
ZOO = ROOT / "rmt" / "zoo" / "models"
CONFIG_SEEDS = ("probe", "warmup_shapes", "graph_gap", "queue_priority", "rl_high")
ACCEPTED = (0, 2, 3, 4)
#: Commands that only read files: run whole. The others are only parsed (they would start servers or load).
OFFLINE_COMMANDS = ("check", "report", "lint", "compare")

json_values: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-2**70, max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)


def cli(argv: list[str]) -> tuple[int, str, str]:
    """Run ``rmt ARGV`` in this process: (exit code, stdout, stderr); any exception but SystemExit escapes."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    return code, out.getvalue(), err.getvalue()


def assert_clean(code: int, err: str, argv: list[str]) -> None:
    """The bad-input contract on one command's outcome."""
    assert code in ACCEPTED, f"rmt {argv}: exit {code}\n{err[-2000:]}"
    if code == 2:
        lines = [line for line in err.split("\n") if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("rmt: error: "), f"rmt {argv}: stderr\n{err[-2000:]}"
    assert "Traceback" not in err, f"rmt {argv}: traceback\n{err[-2000:]}"


@contextlib.contextmanager
def scratch() -> Iterator[Path]:
    """A temporary folder for one example (hypothesis runs many examples per test function)."""
    folder = tempfile.mkdtemp(prefix="rmt-fuzz-")
    try:
        yield Path(folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# -- byte and structure mutations ------------------------------------------------------------------------------------
def mutate_bytes(data: bytes, rng: random.Random, tokens: tuple[bytes, ...] = ()) -> bytes:
    """``data`` with one to three edits: a span cut, repeated, overwritten with random bytes, or a token inserted."""
    for _ in range(rng.randint(1, 3)):
        i = rng.randrange(len(data) + 1)
        j = min(len(data), i + rng.randint(0, 40))
        kind = rng.randrange(5)
        if kind == 0:
            data = data[:i] + data[j:]
        elif kind == 1:
            data = data[:j] + data[i:j] + data[j:]
        elif kind == 2:
            data = data[:i] + bytes(rng.randrange(256) for _ in range(rng.randint(1, 8))) + data[j:]
        elif kind == 3 and tokens:
            data = data[:i] + rng.choice(tokens) + data[i:]
        else:
            data = data[:i]
    return data


def paths_of(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path (keys / indexes) into a JSON value, the root included."""
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += paths_of(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += paths_of(v, (*prefix, i))
    return out


def replaced(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    """A copy of ``value`` with the subtree at ``path`` replaced by ``new``."""
    if not path:
        return new
    copy = json.loads(json.dumps(value))
    node = copy
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = new
    return copy


@st.composite
def mutated_json(draw: Callable[..., Any], seed: Any) -> Any:
    """``seed`` with one subtree replaced by a random JSON value (structure-aware: keys and shapes stay real)."""
    paths = paths_of(seed)
    return replaced(seed, draw(st.sampled_from(paths)), draw(json_values))


# -- scenario files ------------------------------------------------------------------------------------------------
SCENARIO_NAMES = sorted(p.stem for p in SCENARIOS.glob("*.json"))


@st.composite
def scenario_files(draw: Callable[..., Any]) -> bytes:
    """A definition file: a ready scenario with a subtree replaced, its bytes mutated, or arbitrary bytes."""
    seed_text = (SCENARIOS / f"{draw(st.sampled_from(SCENARIO_NAMES))}.json").read_bytes()
    kind = draw(st.integers(0, 3))
    if kind == 0:
        return json.dumps(draw(mutated_json(json.loads(seed_text)))).encode()
    if kind == 1:
        rng = random.Random(draw(st.integers(0, 2**32)))
        return mutate_bytes(seed_text, rng, (b"{", b"]", b'"', b"\xff", b"1e999"))
    if kind == 2:
        return json.dumps(draw(json_values)).encode()
    return draw(st.binary(max_size=200))


def check_scenario_file(data: bytes) -> None:
    """A definition file is accepted or refused with a ConfigError (``rmt run`` reads it before any server starts),
    and ``rmt lint --scenario`` on it follows the bad-input contract."""
    with scratch() as tmp:
        path = tmp / "mine.json"
        path.write_bytes(data)
        with contextlib.suppress(ConfigError):
            load_definition(path)
        argv = ["lint", str(tmp / "repo"), "--scenario", str(path)]
        (tmp / "repo").mkdir()
        (tmp / "repo" / "probe").symlink_to(ZOO / "probe", target_is_directory=True)
        code, _, err = cli(argv)
        assert_clean(code, err, argv)


# -- check specs ---------------------------------------------------------------------------------------------------
_PARAMS = sorted({f"{name}.{p.name}" for name, cls in CHECKS.items() for p in cls.params} | set(CHECKS))
_VALUES = ('"1MiB/10k"', "0.9", "off", "on", "-1", "1e999", "nan", "10%", "30s", "'x'", '"', "", "2:1", "R1:2",
           "probe/p0=2", "[1,2]", "{}", "100B/request", "0", "inf")


@st.composite
def check_specs(draw: Callable[..., Any]) -> str:
    """``--checks`` text: items of real check and parameter names with real and broken values, or noise."""
    if draw(st.integers(0, 4)) == 0:
        return draw(st.text(max_size=40))
    items = []
    for _ in range(draw(st.integers(1, 4))):
        key = draw(st.sampled_from(_PARAMS) | st.text(max_size=8))
        value = draw(st.sampled_from(_VALUES) | st.text(max_size=10))
        items.append(draw(st.sampled_from([f"{key}={value}", f"{key} = {value}", key, f"={value}", f"{key}=="])))
    return draw(st.sampled_from([",", ";", ", "])).join(items)


def check_check_spec(text: str, *, run: bool) -> None:
    """A spec parses and builds its checks, or is one ConfigError; with ``run``, ``rmt check`` on a real run
    directory with it follows the bad-input contract and writes no verdicts when it refuses."""
    with contextlib.suppress(ConfigError):
        build_checks(merge_specs(parse_spec(text)))
    if not run:
        return
    with scratch() as tmp:
        argv = ["check", str(SEED_RUN), "--out", str(tmp / "out"), f"--checks={text}"]
        code, _, err = cli(argv)
        assert_clean(code, err, argv)
        if code == 2:
            assert not (tmp / "out" / "verdicts.json").exists(), "refused, yet verdicts.json written"


# -- config.pbtxt --------------------------------------------------------------------------------------------------
_PBTXT_TOKENS = (b"{", b"}", b"[", b"]", b":", b'"', b"-1", b"0", b"99999999999999999999", b"TYPE_FP32", b"TYPE_INT8",
                 b"max_batch_size: ", b"dims: [ -1 ]", b"model_warmup [ { name: \"w\" batch_size: 4 } ]",
                 b"input [ { name: \"INPUT0\" data_type: TYPE_FP32 dims: [ 3 ] } ]", b"instance_group [ { count: 0 } ]",
                 b"dynamic_batching { preferred_batch_size: [ 0 ] }", b"\xff\xfe", b"#", b"\n")


@st.composite
def config_texts(draw: Callable[..., Any]) -> bytes:
    """A zoo ``config.pbtxt`` with bytes cut, repeated, overwritten or config tokens inserted."""
    seed = (ZOO / draw(st.sampled_from(CONFIG_SEEDS)) / "config.pbtxt").read_bytes()
    return mutate_bytes(seed, random.Random(draw(st.integers(0, 2**32))), _PBTXT_TOKENS)


def check_config_pbtxt(data: bytes) -> None:
    """``rmt lint`` (with coverage and the rate-limit pre-flight) on a repository holding the config."""
    with scratch() as tmp:
        model = tmp / "repo" / "m"
        (model / "1").mkdir(parents=True)
        (model / "config.pbtxt").write_bytes(data)
        for extra in ([], ["--coverage", "--rate-limit-resource", "R1:2"]):
            argv = ["lint", str(tmp / "repo"), *extra]
            code, _, err = cli(argv)
            assert_clean(code, err, argv)


# -- command-line arguments ----------------------------------------------------------------------------------------
def _options() -> dict[str, list[str]]:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.choices and isinstance(a.choices, dict))
    assert isinstance(sub.choices, dict)
    return {name: sorted({o for a in p._actions for o in a.option_strings})
            for name, p in sub.choices.items()}


OPTIONS = _options()
_ARG_VALUES = ("0", "-1", "1e999", "nan", "x", "", "a,b", "R1:2", "R1:x", "R1:2:-1", "127.0.0.1:1", "http://[::1",
               "/nonexistent", "--", "-", "leak=off", "\x00", "é", "9" * 30)


@st.composite
def cli_args(draw: Callable[..., Any]) -> list[str]:
    """An argument vector: a command (or noise), then its real options with odd values, paths and noise."""
    command = draw(st.sampled_from([*OPTIONS, "", "nope"]))
    argv = [command] if command else []
    for _ in range(draw(st.integers(0, 5))):
        kind = draw(st.integers(0, 3))
        if kind == 0 and OPTIONS.get(command):
            argv.append(draw(st.sampled_from(OPTIONS[command])))
        elif kind == 1:
            argv.append(draw(st.sampled_from([str(SEED_RUN), str(ZOO), str(SEED_RUN / "manifest.json"),
                                              "/nonexistent/x", "/dev/null", "/"])))
        elif kind == 2:
            argv.append(draw(st.sampled_from(_ARG_VALUES)))
        else:
            argv.append(draw(st.text(max_size=8).filter(lambda s: "\x00" not in s)))
    return argv


def check_cli_args(argv: list[str]) -> None:
    """Every command parses ``argv`` or refuses it in one line; the offline commands also run it (outputs go to a
    scratch folder: ``--out`` is pointed there)."""
    with scratch() as tmp:
        if argv and argv[0] in OFFLINE_COMMANDS and "--help" not in argv and "-h" not in argv:
            if "--out" in argv:
                i = argv.index("--out")
                argv = [*argv[:i + 1], str(tmp / "out"), *argv[i + 2:]]
            elif argv[0] in ("check", "report"):
                argv = [*argv, "--out", str(tmp / ("out" if argv[0] == "check" else "r.html"))]
            code, _, err = cli(argv)
        else:
            code, err = _parse_only(argv)
        assert_clean(code, err, argv)


def _parse_only(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        try:
            build_parser().parse_args(argv)
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 2
    return code, err.getvalue()


# -- corrupt run directories ---------------------------------------------------------------------------------------
RUN_FILES = sorted(p.name for p in SEED_RUN.iterdir())


@st.composite
def run_damage(draw: Callable[..., Any]) -> list[tuple[str, str, Any]]:
    """One to three damages to a copy of :data:`SEED_RUN`: (file, how, argument)."""
    out = []
    for _ in range(draw(st.integers(1, 3))):
        name = draw(st.sampled_from(RUN_FILES))
        how = draw(st.sampled_from(["delete", "truncate", "line", "field", "bytes", "empty"]))
        arg: Any = draw(json_values) if how in ("line", "field") else draw(st.integers(0, 2**32))
        out.append((name, how, arg))
    return out


def damage(run: Path, name: str, how: str, arg: Any, rng: random.Random) -> None:
    """Apply one damage to ``run/name``."""
    path = run / name
    if not path.exists():
        return
    data = path.read_bytes()
    if how == "delete":
        path.unlink()
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "truncate":
        path.write_bytes(data[: rng.randrange(len(data) + 1)])
    elif how == "bytes":
        path.write_bytes(mutate_bytes(data, rng, (b"\n", b"{", b"null", b"\xff")))
    else:
        lines = data.decode(errors="replace").splitlines(keepends=True) or ["{}\n"]
        i = rng.randrange(len(lines))
        try:
            json.loads(data if name.endswith(".json") else lines[i])
        except ValueError:
            how = "line"  # an earlier damage broke the JSON: replace the whole line
        if how == "line":
            lines[i] = json.dumps(arg) + "\n"
        elif name.endswith(".jsonl"):
            record = json.loads(lines[i])
            lines[i] = json.dumps(replaced(record, rng.choice(paths_of(record)), arg)) + "\n"
        else:
            whole = json.loads(data)
            path.write_text(json.dumps(replaced(whole, rng.choice(paths_of(whole)), arg)))
            return
        path.write_text("".join(lines))


def check_corrupt_run(damages: list[tuple[str, str, Any]]) -> None:
    """``rmt check`` and ``rmt report`` on the damaged copy: the contract, and no output when refused."""
    with scratch() as tmp:
        run = tmp / "run"
        shutil.copytree(SEED_RUN, run)
        rng = random.Random(repr(damages))
        for name, how, arg in damages:
            damage(run, name, how, arg, rng)
        out = tmp / "out"
        for argv, written in ((["check", str(run), "--out", str(out)], ("verdicts.json", "junit.xml")),
                              (["report", str(run), "--out", str(out / "r.html")], ("r.html",))):
            code, _, err = cli(argv)
            assert_clean(code, err, argv)
            if code == 2:
                assert not any((out / w).exists() for w in written), f"rmt {argv} refused yet wrote its output"


#: Every property with its strategy: name → (strategy, check of one example).
PROPERTIES: dict[str, tuple[st.SearchStrategy[Any], Callable[[Any], None]]] = {
    "scenario files": (scenario_files(), check_scenario_file),
    "check specs": (check_specs(), lambda text: check_check_spec(text, run=True)),
    "config.pbtxt": (config_texts(), check_config_pbtxt),
    "CLI arguments": (cli_args(), check_cli_args),
    "corrupt run directories": (run_damage(), check_corrupt_run),
}
