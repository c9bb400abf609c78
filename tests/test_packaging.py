"""The container packaging (Dockerfile, compose.yaml, .dockerignore) keeps the promises a user
relies on: the runtime image has no torch, runs as a user without privileges, checks its own
health and listens on the container's interfaces; the compose stack runs Redis durably (AOF,
noeviction) and the API and the workers share one Redis and one results folder.

No Docker engine is needed: the Dockerfile is read with a small parser of its instructions and
compose.yaml with a reader of the block-style YAML subset it is written in (PyYAML is not a
dependency). The reader refuses anything outside that subset, so the file cannot drift into
syntax it would misread; where PyYAML is installed, a test checks the two agree.
"""
from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "compose.yaml"
DOCKERIGNORE = ROOT / ".dockerignore"
RESULTS_ENV = "KINETOSCOPE_RESULTS_DIR"
REDIS_ENV = "KINETOSCOPE_REDIS_URL"


# --- the Dockerfile ------------------------------------------------------------------------------

@dataclass
class Instruction:
    keyword: str  # upper case: FROM, RUN, ...
    args: str     # the rest of the logical line, continuations joined


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [i.args for i in self.instructions if i.keyword == keyword]


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """(global ARG defaults, stages in order). Comment lines are dropped, `\\` continues a line."""
    logical, current = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#") and not current:
            continue
        if line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            current += line[:-1].rstrip() + " "
            continue
        current += line
        if current.strip():
            logical.append(current.strip())
        current = ""
    assert not current, "the Dockerfile ends inside a continued line"
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "FROM":
            words = args.split()
            words = [w for w in words if not w.startswith("--platform")]
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(words[0], name))
        elif not stages:
            assert keyword == "ARG", f"only ARG may come before the first FROM, not {keyword}"
            key, _, default = args.partition("=")
            global_args[key] = default
        else:
            stages[-1].instructions.append(Instruction(keyword, args))
    return global_args, stages


def resolve(value: str, variables: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: variables.get(m.group(1) or m.group(2), ""), value)


def exec_form(args: str) -> list[str]:
    """The JSON array of an exec-form CMD / HEALTHCHECK CMD, or the shell words of a shell form."""
    return json.loads(args) if args.startswith("[") else shlex.split(args)


@pytest.fixture(scope="module")
def dockerfile() -> tuple[dict[str, str], list[Stage]]:
    return parse_dockerfile(DOCKERFILE.read_text())


def chain(stages: list[Stage], target: Stage, variables: dict[str, str]) -> list[Stage]:
    """The stage and the stages it is built FROM (by name), nearest first."""
    by_name = {s.name: s for s in stages if s.name}
    out, stage = [target], target
    while (base := resolve(stage.base, variables)) in by_name:
        stage = by_name[base]
        out.append(stage)
    return out


def runtime_chain(dockerfile, gpu: str) -> list[Stage]:
    global_args, stages = dockerfile
    final = stages[-1]  # `docker build` with no --target builds the last stage
    return chain(stages, final, {**global_args, "GPU": gpu})


def installs(run: str) -> list[str]:
    """The words of every `pip install` in a RUN command, flags and requirements alike."""
    words: list[str] = []
    for command in re.split(r"&&|;|\|\|", run):
        tokens = command.split()
        for i in range(len(tokens) - 1):
            if tokens[i].endswith("pip") and tokens[i + 1] == "install":
                words += tokens[i + 2:]
    return words


def test_dockerfile_parser_reads_a_known_file():
    global_args, stages = parse_dockerfile(
        "ARG A=1\nFROM x:${A} AS one\nRUN a \\\n  # note\n  b\nFROM one\nUSER 5\n")
    assert global_args == {"A": "1"}
    assert [(s.base, s.name) for s in stages] == [("x:${A}", "one"), ("one", None)]
    assert stages[0].all("RUN") == ["a b"] and stages[1].all("USER") == ["5"]
    assert [s.name for s in chain(stages, stages[1], global_args)] == [None, "one"]


def test_export_stage_makes_the_model_repository_with_cpu_torch(dockerfile):
    _, stages = dockerfile
    export = next(s for s in stages if s.name == "export")
    runs = " ".join(export.all("RUN"))
    assert "download.pytorch.org/whl/cpu" in runs, "torch must come from PyTorch's CPU wheel index"
    assert re.search(r"\bkinetoscope export onnx\b.*--out /models/moving-digits", runs)
    assert "optional-dependencies']['train']" in runs, "the export stage installs the train extras"


@pytest.mark.parametrize("gpu", ["0", "1"])
def test_runtime_image_installs_no_torch_and_no_extras(dockerfile, gpu):
    for stage in runtime_chain(dockerfile, gpu):
        for run in stage.all("RUN"):
            words = installs(run)
            assert not any(re.match(r"[\"']?torch\b", w) for w in words), f"runtime installs torch: {run}"
            assert not any("[" in w and w.split("[")[0] in (".", "kinetoscope") for w in words), \
                f"runtime installs the package with extras: {run}"
            if "tomllib" in run:  # the requirement list is read from [project] dependencies only
                assert "optional-dependencies" not in run, run
    runtime = runtime_chain(dockerfile, gpu)[0]
    assert any("requirements.txt" in w for run in runtime.all("RUN") for w in installs(run)), \
        "the runtime installs the requirements read from pyproject.toml"
    assert any("--no-deps" in installs(run) for run in runtime.all("RUN")), "the package itself, without deps"


def test_gpu_build_argument_picks_a_cuda_base_and_onnxruntime_gpu(dockerfile):
    global_args, stages = dockerfile
    assert global_args.get("GPU") == "0", "the default build is the CPU image"
    cpu, gpu = runtime_chain(dockerfile, "0"), runtime_chain(dockerfile, "1")
    assert resolve(cpu[-1].base, global_args).startswith("python:3.11-slim")
    assert resolve(gpu[-1].base, global_args).startswith("nvidia/cuda:")
    assert "cudnn" in resolve(gpu[-1].base, global_args), "ONNX Runtime's CUDA provider needs cuDNN"
    swap = " ".join(cpu[0].all("RUN"))
    assert "onnxruntime-gpu" in swap and "GPU" in swap


def test_runtime_runs_as_an_unprivileged_user(dockerfile):
    users = [u for stage in reversed(runtime_chain(dockerfile, "0")) for u in stage.all("USER")]
    assert users, "the runtime image must set USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), f"the runtime runs as {users[-1]}"


def test_runtime_listens_on_all_interfaces_serves_and_checks_health(dockerfile):
    runtime = runtime_chain(dockerfile, "0")[0]
    env = " ".join(runtime.all("ENV"))
    assert re.search(r"\bKINETOSCOPE_HOST=0\.0\.0\.0\b", env), "inside a container the API must bind 0.0.0.0"
    assert re.search(r"\bKINETOSCOPE_MODEL_REPOSITORY=/models\b", env)
    assert "8000" in runtime.all("EXPOSE")
    assert exec_form(runtime.all("CMD")[-1]) == ["kinetoscope", "serve"]
    healthchecks = runtime.all("HEALTHCHECK")
    assert healthchecks and not healthchecks[-1].upper().startswith("NONE")
    probe = healthchecks[-1].split("CMD", 1)[1].strip()
    assert "/healthz" in probe and "urllib" in probe and "curl" not in probe
    copies = runtime.all("COPY")
    assert any("--from=export" in c and "/models" in c for c in copies), "the model repository comes from export"


def test_healthcheck_probe_is_valid_python(dockerfile):
    runtime = runtime_chain(dockerfile, "0")[0]
    argv = exec_form(runtime.all("HEALTHCHECK")[-1].split("CMD", 1)[1].strip())
    assert argv[:2] == ["python", "-c"]
    compile(argv[2], "<healthcheck>", "exec")


def requirement_script(run: str) -> str:
    """The `python -c "..."` program of a RUN, as the shell would pass it (GPU left to the caller)."""
    match = re.search(r'python3? -c "(.*?)" >', run)
    assert match, run
    return match.group(1)


@pytest.mark.parametrize("gpu", ["0", "1"])
def test_runtime_requirements_are_the_project_dependencies(dockerfile, gpu, tmp_path):
    """Runs the Dockerfile's own pyproject -> requirements.txt program on this pyproject.toml."""
    import tomllib  # noqa: PLC0415 - Python 3.11+, like the images

    runtime = runtime_chain(dockerfile, gpu)[0]
    run = next(r for r in runtime.all("RUN") if "tomllib" in r)
    program = requirement_script(run).replace("${GPU}", gpu).replace("/tmp/pyproject.toml", str(ROOT / "pyproject.toml"))
    out = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True).stdout.split()
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    expected = [d.replace("onnxruntime", "onnxruntime-gpu", 1) if gpu == "1" and d.startswith("onnxruntime")
                else d for d in deps]
    assert out == expected
    assert not any(d.lower().startswith("torch") for d in out)
    assert any(d.startswith("onnxruntime-gpu" if gpu == "1" else "onnxruntime") for d in out)
    if gpu == "1":
        assert not any(re.match(r"onnxruntime(?!-gpu)\b", d) for d in out), "both onnxruntime builds"


# --- compose.yaml: a reader of block-style YAML --------------------------------------------------

class UnsupportedYAML(ValueError):
    pass


def _flow_sequence(text: str) -> list:
    """`[a, "b", 'c']` on one line: scalars only."""
    items, current, quote = [], "", None
    for ch in text[1:-1]:
        if quote:
            quote = None if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "[]{}":
            raise UnsupportedYAML(f"nested flow collection: {text!r}")
        elif ch == ",":
            items.append(current)
            current = ""
            continue
        current += ch
    if quote:
        raise UnsupportedYAML(f"unclosed quote: {text!r}")
    if current.strip() or items:
        items.append(current)
    return [_scalar(item) for item in items]


def _scalar(text: str):
    text = text.strip()
    if text.startswith("[") and text.endswith("]"):
        return _flow_sequence(text)
    if text[:1] in "&*!|>{[" or text.startswith("<<"):
        raise UnsupportedYAML(f"outside the supported subset: {text!r}")
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return json.loads(text) if text[0] == '"' else text[1:-1].replace("''", "'")
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    return {"true": True, "false": False, "null": None, "~": None, "": None}.get(text, text)


def _strip_comment(line: str) -> str:
    quote = None
    for i, ch in enumerate(line):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1] in " \t"):
            return line[:i].rstrip()
    return line.rstrip()


def _split_key(text: str) -> tuple[str, str] | None:
    """`key: value` or `key:` (key unquoted or quoted); None for a plain scalar."""
    match = re.match(r"""^("[^"]*"|'[^']*'|[^\s"'#][^:#]*?)\s*:(?:\s+(.*)|$)""", text)
    if not match:
        return None
    return str(_scalar(match.group(1))), (match.group(2) or "")


def load_block_yaml(text: str):
    """Block mappings and sequences of scalars (plain, single- or double-quoted), one-line flow
    sequences of scalars, comments; no flow mappings, nested flow collections, anchors, aliases,
    merge keys, tags or multi-line scalars: those raise UnsupportedYAML."""
    lines = []
    for number, raw in enumerate(text.splitlines(), 1):
        if "\t" in raw[: len(raw) - len(raw.lstrip())]:
            raise UnsupportedYAML(f"line {number}: tab indentation")
        line = _strip_comment(raw)
        if line.strip() in ("---",):
            continue
        if line.strip():
            lines.append((len(line) - len(line.lstrip()), line.strip(), number))

    def block(i: int, indent: int):
        if lines[i][1].startswith("- ") or lines[i][1] == "-":
            return sequence(i, indent)
        return mapping(i, indent)

    def value_after(i: int, indent: int, rest: str, number: int):
        if rest:
            return _scalar(rest), i + 1
        if i + 1 < len(lines) and (lines[i + 1][0] > indent or
                                   (lines[i + 1][0] == indent and lines[i + 1][1].startswith("-"))):
            return block(i + 1, lines[i + 1][0])
        return None, i + 1

    def mapping(i: int, indent: int):
        out: dict = {}
        while i < len(lines) and lines[i][0] == indent and not lines[i][1].startswith("-"):
            _, content, number = lines[i]
            pair = _split_key(content)
            if pair is None:
                raise UnsupportedYAML(f"line {number}: expected `key: value`, got {content!r}")
            key, rest = pair
            if key in out:
                raise UnsupportedYAML(f"line {number}: duplicate key {key!r}")
            out[key], i = value_after(i, indent, rest, number)
        if i < len(lines) and lines[i][0] > indent:
            raise UnsupportedYAML(f"line {lines[i][2]}: unexpected indentation")
        return out, i

    def sequence(i: int, indent: int):
        out: list = []
        while i < len(lines) and lines[i][0] == indent and (lines[i][1].startswith("- ") or lines[i][1] == "-"):
            _, content, number = lines[i]
            item = content[1:].strip()
            if not item:
                value, i = value_after(i, indent, "", number)
            elif _split_key(item) is not None:  # "- key: value" opens a mapping in the item
                inner = indent + 2
                lines[i] = (inner, item, number)
                value, i = mapping(i, inner)
            else:
                value, i = _scalar(item), i + 1
            out.append(value)
        return out, i

    if not lines:
        return None
    data, end = block(0, lines[0][0])
    if end != len(lines):
        raise UnsupportedYAML(f"line {lines[end][2]}: unexpected content")
    return data


def test_yaml_reader_reads_a_known_document():
    doc = ("a: 1  # note\nb:\n  - x\n  - \"y: z\"\n  - k: v\n    w: '#'\nc:\n  d: ${E:-[]}\n  e:\n"
           "f:\n- 1\n- true\ng: [\"CMD\", 'a, b', c]\n")
    assert load_block_yaml(doc) == {"a": 1, "b": ["x", "y: z", {"k": "v", "w": "#"}], "c": {"d": "${E:-[]}", "e": None},
                                    "f": [1, True], "g": ["CMD", "a, b", "c"]}
    for bad in ("a: &x 1\n", "a: [1, [2]]\n", "a: {b: 1}\n", "a: *x\n", "<<: 1\n", "a: |\n  text\n", "a: 1\na: 2\n", "a:\n  b: 1\n    c: 2\n"):
        with pytest.raises(UnsupportedYAML):
            load_block_yaml(bad)


@pytest.fixture(scope="module")
def compose() -> dict:
    return load_block_yaml(COMPOSE.read_text())


def test_yaml_reader_agrees_with_pyyaml(compose):
    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed; the reader's own tests still run")
    assert yaml.safe_load(COMPOSE.read_text()) == compose


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def command_words(service: dict) -> list[str]:
    command = service.get("command") or []
    return [str(w) for w in command] if isinstance(command, list) else shlex.split(command)


def volume_mounts(service: dict) -> dict[str, str]:
    """container path -> source (named volume or host path)."""
    mounts = {}
    for volume in service.get("volumes") or []:
        if isinstance(volume, dict):
            mounts[volume["target"]] = volume.get("source")
        else:
            source, target = volume.split(":")[:2]
            mounts[target] = source
    return mounts


def test_compose_has_redis_api_and_worker(compose):
    services = compose["services"]
    assert {"redis", "api", "worker"} <= set(services)
    assert str(services["redis"]["image"]).split(":")[0] == "redis"
    assert str(services["redis"]["image"]).split(":")[1].startswith("7")
    assert services["api"]["image"] == services["worker"]["image"], "api and worker run one image"


def test_redis_is_durable_and_never_evicts(compose):
    redis = compose["services"]["redis"]
    words = command_words(redis)
    assert words[:1] == ["redis-server"]
    options = {words[i]: words[i + 1] for i in range(1, len(words) - 1) if words[i].startswith("--")}
    assert options.get("--appendonly") == "yes"
    assert options.get("--appendfsync") in ("everysec", "always")
    assert options.get("--maxmemory-policy") == "noeviction"
    source = volume_mounts(redis).get("/data")
    assert source in compose.get("volumes", {}), "Redis's /data (the AOF) lives on a named volume"


def test_api_and_worker_share_redis_and_results(compose):
    services = compose["services"]
    api, worker = services["api"], services["worker"]
    api_env, worker_env = environment(api), environment(worker)
    assert api_env[REDIS_ENV] == worker_env[REDIS_ENV]
    assert re.fullmatch(r"redis://redis:6379/\d+", api_env[REDIS_ENV]), "the URL names the compose redis service"
    results = api_env[RESULTS_ENV]
    assert worker_env[RESULTS_ENV] == results
    api_source, worker_source = volume_mounts(api).get(results), volume_mounts(worker).get(results)
    assert api_source and api_source == worker_source, "results_dir must be one volume mounted in both"
    assert api_source in compose.get("volumes", {}), "the results volume is a named volume"
    assert "KINETOSCOPE_EMBEDDED_WORKERS" not in api_env or api_env["KINETOSCOPE_EMBEDDED_WORKERS"] == "false"


def test_api_publishes_8000_and_worker_runs_the_worker(compose):
    services = compose["services"]
    ports = [str(p) for p in services["api"].get("ports", [])]
    assert any(re.search(r"(^|:)8000:8000$", p) for p in ports), ports
    assert command_words(services["worker"])[:2] == ["kinetoscope", "worker"]
    assert "ports" not in services["worker"], "workers take jobs from Redis; they are scaled, so publish nothing"
    assert "ports" not in services["redis"], "Redis holds the jobs: keep it off the host's network"
    assert "container_name" not in services["worker"], "a fixed name would stop --scale worker=N"


def test_services_check_health_and_wait_for_redis(compose):
    services = compose["services"]
    for name in ("redis", "api", "worker"):
        test = services[name].get("healthcheck", {}).get("test")
        assert test and test[0] in ("CMD", "CMD-SHELL"), f"{name} has no healthcheck"
    assert "ping" in " ".join(services["redis"]["healthcheck"]["test"])
    for name in ("api", "worker"):
        depends = services[name]["depends_on"]
        assert depends["redis"]["condition"] == "service_healthy", name
    for name in ("api", "worker"):
        probe = services[name]["healthcheck"]["test"]
        if probe[0] == "CMD" and probe[1] == "python":
            compile(probe[3], f"<{name} healthcheck>", "exec")


def test_compose_builds_the_dockerfile(compose):
    for name in ("api", "worker"):
        build = compose["services"][name].get("build")
        assert build is None or (build if isinstance(build, str) else build.get("context")) == "."


# --- .dockerignore ---------------------------------------------------------------------------------

def test_dockerignore_keeps_local_state_out_of_the_build_context():
    patterns = {line.strip().strip("/") for line in DOCKERIGNORE.read_text().splitlines()
                if line.strip() and not line.startswith("#")}
    for needed in (".git", ".venv", "model_repository", "runs", "artifacts"):
        assert needed in patterns or f"**/{needed}" in patterns, needed
    assert any("node_modules" in p for p in patterns)
    for kept in ("pyproject.toml", "server", "models", "export", "cli", "README.md"):
        assert not any(p == kept or p == f"{kept}/" for p in patterns), f"{kept} is needed to build"
    assert not any(p.startswith("models/checkpoints") for p in patterns), "the export stage needs the checkpoints"
