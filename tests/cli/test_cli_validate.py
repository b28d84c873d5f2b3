"""`hitkit validate` on the shipped examples and on broken studies."""

import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from hitkit.cli.main import LAZY_COMMANDS, cli
from hitkit.study.config import load_study

EXAMPLES = Path(__file__).resolve().parents[2] / "data" / "examples"

EXAMPLE_FILES = sorted(EXAMPLES.glob("*.toml"))


def run(*args: str):
    return CliRunner().invoke(cli, list(args))


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=[p.name for p in EXAMPLE_FILES])
def test_every_example_is_a_valid_config(path: Path):
    result = run("validate", "--config-only", str(path))
    assert result.exit_code == 0, result.output
    assert f"{path}: valid" in result.output
    load_study(path)


def test_examples_include_demo_and_paper():
    assert {p.name for p in EXAMPLE_FILES} >= {"demo.toml", "paper-cifar10.toml"}


def test_demo_plan_is_printed():
    result = run("validate", str(EXAMPLES / "demo.toml"))
    assert result.exit_code == 0, result.output
    out = result.output
    for expected in [
        "IRIs              192 = models × targets × seeds × losses",
        "57,600 image-steps",
        "20 trials = 10 main + 8 catch + 2 repeats",
        "HITs              20",
        "participants      320",
        "total             320.00 USD",
        "will be trained by `hitkit generate`",
    ]:
        assert expected in out


def test_validate_says_how_often_a_guesser_passes(tmp_path: Path):
    out = run("validate", "--config-only", str(EXAMPLES / "demo.toml")).output
    assert "a participant answering at random passes 3.5% of the time" in out
    assert "warning" not in out
    # the old demo rules (2 catch trials, 2 of 3 right) let a quarter of guessers through
    text = (EXAMPLES / "demo.toml").read_text()
    text = text.replace("catch_per_hit = 8", "catch_per_hit = 2").replace(
        "min_catch_accuracy = 0.8", "min_catch_accuracy = 0.67")
    (tmp_path / "study.toml").write_text(text)
    result = run("validate", "--config-only", str(tmp_path / "study.toml"))
    assert result.exit_code == 0, result.output
    assert "passes 25.0% of the time" in result.output
    assert "warning: above 5%: raise [survey].catch_per_hit" in result.output


def test_paper_example_matches_the_aaai_design():
    config = load_study(EXAMPLES / "paper-cifar10.toml").config
    archs = {m.factors["architecture"] for m in config.models}
    assert archs == {"resnet18", "vgg16", "densenet121", "inception_v3"}
    assert {m.factors["training"] for m in config.models} == {"standard", "adversarial-l2-eps1"}
    assert config.targets.count == 100 and config.targets.source == "cifar10"
    assert {loss.kind for loss in config.generation.losses} == {"reg_free", "regularized", "adversarial"}
    assert config.generation.steps == 5000 and config.generation.step_size == 1.0
    assert config.survey.task == "2afc"


def test_missing_checkpoints_and_folders_are_errors():
    result = run("validate", str(EXAMPLES / "paper-cifar10.toml"))
    assert result.exit_code == 2
    assert "models[0].checkpoint:" in result.output and "does not exist" in result.output
    assert "targets.path:" in result.output


def test_study_folder_with_checkpoints(tmp_path: Path):
    shutil.copy(EXAMPLES / "paper-cifar10.toml", tmp_path / "study.toml")
    for model in load_study(tmp_path).config.models:
        ckpt = tmp_path / model.checkpoint
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        ckpt.write_bytes(b"x")
    (tmp_path / "data" / "cifar10" / "cifar-10-batches-py").mkdir(parents=True)
    result = run("validate", "--study", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert "IRIs              2,400" in result.output


def test_empty_target_folder_is_an_error(tmp_path: Path):
    shutil.copy(EXAMPLES / "paper-cifar10.toml", tmp_path / "study.toml")
    (tmp_path / "data" / "cifar10").mkdir(parents=True)
    result = run("validate", "--study", str(tmp_path), )
    assert result.exit_code == 2
    assert "is empty" in result.output


def test_bad_config_exits_2_with_the_field(tmp_path: Path):
    text = (EXAMPLES / "demo.toml").read_text().replace("reward = 1.00", "reward = -1.00")
    path = tmp_path / "study.toml"
    path.write_text(text)
    result = run("validate", "--study", str(tmp_path))
    assert result.exit_code == 2
    assert f"{path}: survey.reward: Input should be greater than 0" in result.output


def test_file_and_study_together_is_a_usage_error(tmp_path: Path):
    result = run("validate", "--study", str(tmp_path), str(EXAMPLES / "demo.toml"))
    assert result.exit_code == 2 and "either FILE or --study" in result.output


def test_installed_console_script_has_version_and_examples():
    exe = Path(sys.executable).with_name("hitkit")
    version = subprocess.run([exe, "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.startswith("hitkit, version ")
    helptext = subprocess.run([exe, "--help"], capture_output=True, text=True, check=True).stdout
    assert "Examples:" in helptext and "validate" in helptext


def all_command_names() -> list[str]:
    return cli.list_commands(click.Context(cli))


@pytest.mark.parametrize("name", all_command_names())
def test_every_command_has_examples_in_its_help(name):
    result = run(name, "--help")
    assert result.exit_code == 0, result.output
    assert "Examples:" in result.output, f"`hitkit {name} --help` shows no example"


@pytest.mark.parametrize("name", sorted(LAZY_COMMANDS))
def test_lazy_commands_resolve_to_the_named_command(name):
    command = cli.get_command(click.Context(cli), name)
    assert isinstance(command, click.Command) and command.name == name


def test_help_does_not_import_torch_or_pymc():
    code = (
        "import sys; from click.testing import CliRunner; from hitkit.cli.main import cli; "
        "r = CliRunner().invoke(cli, ['--help']); assert r.exit_code == 0, r.output; "
        "print(sorted(m for m in ('torch', 'pymc', 'starlette') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
