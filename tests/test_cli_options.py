"""The `kinetoscope` command's options: `serve` and `worker` flags are generated from the settings
object (one flag per field, only the flags given override the environment and the defaults),
`train` builds its config dataclass from --demo-cpu and --set, and the command imports no heavy
module before a subcommand runs. No model and no server needed: the serving call is replaced."""
from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import app
from cli.options import flag
from server.settings import Settings

WIDE = {"COLUMNS": "400"}  # help lines wide enough that no flag name is cut


def help_text(*command: str) -> str:
    result = CliRunner().invoke(app, [*command, "--help"], env=WIDE)
    assert result.exit_code == 0, result.output
    return result.output


def test_serve_help_lists_a_flag_for_every_setting():
    text = help_text("serve")
    for name, field in Settings.model_fields.items():
        assert flag(name) in text, name
        if field.annotation is bool:
            assert f"--no-{name.replace('_', '-')}" in text, name
    for old in ("--host", "--port", "--model-repository", "--backend", "--redis-url", "--api-key", "--batching",
                "--no-batching", "--no-embedded-workers", "--default-model", "--log-level"):
        assert old in text, old


@pytest.fixture
def served(monkeypatch):
    """The Settings `kinetoscope serve` would run with (the server itself is not started)."""
    got: list[Settings] = []
    fake = types.ModuleType("server.api.app")
    fake.PortInUse = OSError
    fake.serve = got.append
    monkeypatch.setitem(sys.modules, "server.api.app", fake)
    monkeypatch.setattr("server.catalogue.find_repositories", lambda root: [root])
    for name in Settings.model_fields:
        monkeypatch.delenv(f"KINETOSCOPE_{name.upper()}", raising=False)

    def serve(*args: str) -> Settings:
        result = CliRunner().invoke(app, ["serve", *args])
        assert result.exit_code == 0, result.output
        return got.pop()

    return serve


def test_no_flags_leave_every_setting_to_the_environment_and_the_defaults(served, monkeypatch):
    assert served() == Settings()
    monkeypatch.setenv("KINETOSCOPE_PORT", "9100")
    monkeypatch.setenv("KINETOSCOPE_BATCHING", "false")
    settings = served("--host", "0.0.0.0")
    assert (settings.port, settings.batching, settings.host) == (9100, False, "0.0.0.0")
    assert served("--port", "9000").port == 9000  # a flag beats the environment


def test_flags_are_typed_like_their_fields(served, tmp_path):
    settings = served("--port", "9000", "--model-repository", str(tmp_path), "--api-key", "a", "--api-key", "b",
                      "--no-embedded-workers", "--no-batching", "--redis-url", "redis://example:6379/1",
                      "--max-batch-wait-ms", "0.5", "--allowed-hosts", "example.org", "--job-store-dir", "")
    assert settings.port == 9000 and settings.model_repository == tmp_path
    assert settings.api_keys == ["a", "b"] and settings.allowed_hosts == ["example.org"]
    assert settings.embedded_workers is False and settings.batching is False
    assert settings.redis_url == "redis://example:6379/1" and settings.max_batch_wait_ms == 0.5
    assert settings.job_store_dir is None  # "" means in memory, as KINETOSCOPE_JOB_STORE_DIR="" does
    assert settings.host == "127.0.0.1"


def test_a_value_the_settings_refuse_is_one_line_and_exit_2(served):
    result = CliRunner().invoke(app, ["serve", "--tensorrt-max-batch", "0"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.output.startswith("error: --tensorrt-max-batch:"), result.output


def test_worker_flags_are_its_settings_without_the_apis():
    text = help_text("worker")
    for present in ("--redis-url", "--model-repository", "--backend", "--concurrency", "--worker-concurrency",
                    "--heartbeat-seconds", "--metrics-port", "--log-level"):
        assert present in text, present
    for absent in ("--api-key", "--port ", "--share-jobs", "--max-wait-seconds"):
        assert absent not in text, absent


def test_a_worker_without_redis_is_refused(monkeypatch):
    monkeypatch.delenv("KINETOSCOPE_REDIS_URL", raising=False)
    result = CliRunner().invoke(app, ["worker", "--concurrency", "2"])
    assert result.exit_code == 2 and "needs --redis-url" in result.output


def test_train_builds_the_config_from_demo_cpu_and_overrides():
    pytest.importorskip("torch")
    from cli.train import stage_config
    from models.train import DEMO_CPU

    cfg = stage_config("prior", demo_cpu=True, run_dir="runs/x", overrides=["lr=0.5", "prior.layers=3"])
    assert cfg.stage == "prior" and cfg.run_dir == "runs/x"
    assert cfg.steps == DEMO_CPU["prior"]["steps"] and cfg.batch_size == DEMO_CPU["prior"]["batch_size"]
    assert cfg.lr == 0.5 and cfg.prior.layers == 3  # --set comes after --demo-cpu
    with pytest.raises(ValueError, match="unknown stage"):
        stage_config("decoder")


@pytest.mark.parametrize("args,says", [
    (["train", "decoder"], "unknown stage 'decoder'"),
    (["train", "tokenizer", "--set", "nonsense=1"], "unknown config field"),
    (["train", "family", "--budget-minutes", "1"], "needs --budget-minutes and --publish"),
])
def test_train_refuses_bad_arguments_in_one_line(args, says):
    pytest.importorskip("torch")
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert says in result.output and "Traceback" not in result.output


def test_the_command_imports_no_heavy_module_up_front():
    """`kinetoscope --help` (and with it every subcommand's registration) stays torch-free and
    loads no engine: each subcommand imports what it needs when it runs."""
    code = ("import sys; from cli import app; "
            "heavy = [m for m in ('torch', 'onnxruntime', 'fastapi', 'sklearn', 'models', 'export', 'server.runtime') "
            "if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parent.parent).stdout.strip()
    assert out == "[]"
