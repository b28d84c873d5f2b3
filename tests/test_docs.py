"""The reference docs cover every study.toml key and every table column."""

import re
from pathlib import Path

import pytest
from pydantic import BaseModel

from hitkit.study import config as c
from hitkit.study import generation_config as g
from hitkit.study.manifest import MANIFEST
from hitkit.study.responses import RESPONSES
from hitkit.study.trials import TRIALS

DOCS = Path(__file__).resolve().parents[1] / "docs"

# heading in docs/study-config.md -> the schema model it documents
CONFIG_SECTIONS = {
    "## [study]": c.StudySection,
    "## [[models]]": g.ModelSpec,
    "### [models.train]": g.TrainSpec,
    "### normalization = { mean, std }": g.CustomNormalization,
    "## [targets]": g.TargetsSection,
    "## [seeds]": g.SeedsSection,
    "### seeds.kinds: gaussian": g.GaussianSeed,
    "### seeds.kinds: uniform": g.UniformSeed,
    "### seeds.kinds: constant": g.ConstantSeed,
    "### seeds.kinds: image": g.ImageSeed,
    "## [generation]": g.GenerationSection,
    "### [[generation.losses]]: reg_free": g.RegFreeLoss,
    "### [[generation.losses]]: regularized": g.RegularizedLoss,
    "#### transforms": g.TransformSpec,
    "### [[generation.losses]]: adversarial": g.AdversarialLoss,
    "## [survey]": c.SurveySection,
    "## [platform]": c.PlatformSection,
    "### [platform.local]": c.LocalSettings,
    "### [platform.prolific]": c.ProlificSettings,
    "### [platform.mturk]": c.MTurkSettings,
    "#### [platform.mturk.qualifications]": c.MTurkQualifications,
    "## [quality]": c.QualitySection,
    "## [analysis]": c.AnalysisSection,
    "### [analysis.priors]": c.PriorsSection,
}


def sections(text: str) -> dict[str, str]:
    """Markdown heading line -> the text up to the next heading."""
    parts = re.split(r"^(#{2,4} .+)$", text, flags=re.MULTILINE)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def documented_keys(body: str) -> set[str]:
    return set(re.findall(r"^\| `([^`]+)` \|", body, flags=re.MULTILINE))


def all_models(root=c.StudyConfig):
    """Every pydantic model reachable from StudyConfig."""
    import typing

    seen, todo = set(), [root]
    while todo:
        model = todo.pop()
        if model in seen:
            continue
        seen.add(model)
        for field in model.model_fields.values():
            stack = [field.annotation]
            while stack:
                ann = stack.pop()
                if isinstance(ann, type) and issubclass(ann, BaseModel):
                    todo.append(ann)
                stack.extend(typing.get_args(ann))
    return seen - {root}


def test_every_config_model_has_a_section():
    assert all_models() == set(CONFIG_SECTIONS.values())


@pytest.mark.parametrize("heading", CONFIG_SECTIONS)
def test_every_config_key_is_documented(heading):
    found = sections((DOCS / "study-config.md").read_text())
    assert heading in found, f"docs/study-config.md lacks the heading {heading!r}"
    model = CONFIG_SECTIONS[heading]
    expected = {f.alias or name for name, f in model.model_fields.items()}
    documented = documented_keys(found[heading])
    assert expected == documented, (
        f"{heading}: undocumented {sorted(expected - documented)}, stale {sorted(documented - expected)}"
    )


@pytest.mark.parametrize("schema", [MANIFEST, TRIALS, RESPONSES], ids=lambda s: s.name)
def test_every_column_is_documented(schema):
    found = sections((DOCS / "data-formats.md").read_text())
    heading = f"## {schema.name}.parquet"
    assert heading in found
    body = found[heading]
    rows = dict(re.findall(r"^\| `([^`]+)` \| ([^|]+) \|", body, flags=re.MULTILINE))
    assert set(rows) == set(schema.names), (
        f"{heading}: undocumented {sorted(set(schema.names) - set(rows))}, "
        f"stale {sorted(set(rows) - set(schema.names))}"
    )
    for column in schema.columns:
        kind = str(column.type).split("<")[0].split("[")[0]
        assert rows[column.name].strip().startswith(kind), f"{column.name}: type in docs is {rows[column.name]!r}"
    assert "factor columns" in body


def shell_commands_in_docs():
    """(file, command name) for every `hitkit <command>` in a shell code block."""
    found = []
    for path in [DOCS.parent / "README.md", *sorted(DOCS.glob("*.md"))]:
        blocks = re.findall(r"```(?:sh|bash|console|shell)\n(.*?)```", path.read_text(), flags=re.DOTALL)
        for block in blocks:
            for match in re.finditer(r"(?:^|[\s/])hitkit ([a-z][a-z-]*)", block, flags=re.MULTILINE):
                found.append((path.name, match.group(1)))
    return found


def test_docs_name_only_existing_commands():
    import click

    from hitkit.cli.main import cli

    commands = shell_commands_in_docs()
    assert commands, "no hitkit command found in the docs' code blocks"
    names = set(cli.list_commands(click.Context(cli)))
    missing = sorted({(f, name) for f, name in commands if name not in names})
    assert not missing, f"commands in docs that `hitkit --help` does not list: {missing}"


LINK = re.compile(r"\]\(([^)\s]+)\)")


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.DOTALL)
    return {github_slug(h) for h in re.findall(r"^#{1,6} (.+)$", text, flags=re.MULTILINE)}


def test_every_page_is_linked_from_readme_and_index():
    pages = {p.name for p in DOCS.glob("*.md")} - {"index.md"}
    readme = (DOCS.parent / "README.md").read_text()
    index = (DOCS / "index.md").read_text()
    for page in sorted(pages):
        assert f"](docs/{page})" in readme, f"README.md does not link docs/{page}"
        assert f"]({page})" in index, f"docs/index.md does not link {page}"


def test_relative_links_and_anchors_resolve():
    broken = []
    for path in [DOCS.parent / "README.md", *sorted(DOCS.glob("*.md"))]:
        text = re.sub(r"```.*?```", "", path.read_text(), flags=re.DOTALL)
        for target in LINK.findall(text):
            if re.match(r"[a-z]+:", target):
                continue  # http(s), mailto
            file, _, anchor = target.partition("#")
            dest = (path.parent / file) if file else path
            if not dest.is_file():
                broken.append(f"{path.name}: {target} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                broken.append(f"{path.name}: {target} (no such heading)")
    assert not broken, "broken links:\n" + "\n".join(broken)
