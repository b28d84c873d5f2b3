"""`hitkit report`: one self-contained HTML page with every figure and the effects in words."""

import html
import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from playwright.sync_api import sync_playwright

from analysis.figures import FIGURES, FigureInputError
from analysis.report.page import effect_sentence, write_report
from hitkit.cli.analysis import report as report_command

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def report(figure_study, tmp_path_factory):
    folder = shutil.copytree(figure_study, tmp_path_factory.mktemp("report") / "study")
    lines = []
    path = write_report(folder, echo=lines.append)
    return path, path.read_text(encoding="utf-8"), lines


@pytest.fixture
def study_copy(figure_study, tmp_path):
    return shutil.copytree(figure_study, tmp_path / "study")


def test_written_with_progress(report):
    path, _, lines = report
    assert path.name == "report.html" and path.is_file()
    assert lines[0] == "rendering figures:"
    assert sum(line.endswith(": embedded") for line in lines) == len(FIGURES)
    assert lines[-1] == f"wrote {path}"


def test_self_contained(report):
    _, text, _ = report
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", text, re.I)
    assert not re.search(r"url\(\s*['\"]?(https?:)?//", text, re.I)
    assert "<script" not in text.lower() and "<link" not in text.lower()
    sources = re.findall(r'<img [^>]*src="([^"]+)"', text)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "<style>" in text


def test_every_figure_embedded(report):
    _, text, _ = report
    for name in FIGURES:
        block = re.search(rf'<figure id="figure-{name}">(.*?)</figure>', text, re.S)
        assert block, name
        assert 'src="data:image/png;base64,' in block.group(1), name
    assert "not drawn" not in text


def test_effect_sentences_match_effects_csv(report, figure_study):
    _, text, _ = report
    effects = pd.read_csv(figure_study / "analysis" / "effects.csv")
    pairwise = effects[effects["kind"] == "pairwise"]
    assert len(pairwise) == 7
    for row in pairwise.itertuples(index=False):
        sentence = effect_sentence(row._asdict())
        assert html.escape(sentence) in text, sentence
        a, b = row.contrast.split(" − ")
        subject = f"{a} {row.factor}"
        low, high, mean = row.alignment_hdi_low, row.alignment_hdi_high, row.alignment_mean
        d = 2
        while d < 4 and any(0 < abs(v) < 0.5 * 10 ** -d for v in (low, high)):
            d += 1
        def nums(*values, d=d):
            return [f"{v:.{d}f}".replace("-", "−") for v in values]

        if low > 0:
            m, lo, hi = nums(mean, low, high)
            expected = f"{subject} raises alignment over {b} {row.factor} by {m} [{lo}, {hi}]"
        elif high < 0:  # turned round: the better level first
            m, lo, hi = nums(-mean, -high, -low)
            expected = f"{b} {row.factor} raises alignment over {subject} by {m} [{lo}, {hi}]"
        else:
            m, lo, hi = nums(mean, low, high)
            expected = (f"{row.factor.capitalize()}, {a} against {b}: no clear effect "
                        f"({m} [{lo}, {hi}]")
        assert sentence.startswith(expected), (sentence, expected)
    # this study: adversarial training is clearly better, resnet18 vs vit-s is not clear
    assert ("adversarial training raises alignment over standard training by "
            in text)
    assert "Architecture, vit-s against resnet18: no clear effect" in text
    # three-level factors also get each level against the mean of levels
    assert "vgg16 architecture lowers alignment relative to the mean of the architecture levels" \
        in text


def test_effect_sentence_wording():
    row = {"factor": "training", "contrast": "adversarial − standard", "alignment_mean": 0.31,
           "alignment_hdi_low": 0.22, "alignment_hdi_high": 0.40, "alignment_p_gt_0": 0.99}
    assert effect_sentence(row) == (
        "adversarial training raises alignment over standard training by 0.31 [0.22, 0.40] on "
        "the chance-corrected scale (P(>0) = 0.99).")
    flipped = row | {"contrast": "standard − adversarial", "alignment_mean": -0.31,
                     "alignment_hdi_low": -0.40, "alignment_hdi_high": -0.22,
                     "alignment_p_gt_0": 0.0}
    assert effect_sentence(flipped) == effect_sentence(row | {"alignment_p_gt_0": 1.0})
    unclear = row | {"alignment_mean": 0.05, "alignment_hdi_low": -0.03,
                     "alignment_hdi_high": 0.12, "alignment_p_gt_0": 0.83}
    assert effect_sentence(unclear) == (
        "Training, adversarial against standard: no clear effect (0.05 [−0.03, 0.12] "
        "on the chance-corrected scale, P(>0) = 0.83).")
    level = row | {"factor": "epochs", "contrast": "100 − mean"}
    assert effect_sentence(level).startswith(
        "100 epochs raises alignment over the mean of the epochs levels by 0.31")
    # a bound that would print as 0.00 gets more decimals; a negative keeps its sign
    near = row | {"alignment_mean": 0.07, "alignment_hdi_low": 0.004, "alignment_hdi_high": 0.14}
    assert "by 0.070 [0.004, 0.140]" in effect_sentence(near)
    spans = near | {"alignment_hdi_low": -0.0003}
    assert "no clear effect (0.0700 [−0.0003, 0.1400]" in effect_sentence(spans)


def test_sections(report, figure_study):
    _, text, _ = report
    plain = html.unescape(re.sub(r"<[^>]+>", " ", text))
    plain = re.sub(r"\s+", " ", plain)
    assert "Models 18" in plain
    assert "architecture : resnet18, vgg16, vit-s" in plain
    assert "Task 2afc" in plain and "Targets 30 from shapes" in plain
    assert "HITs 40 with responses" in plain
    assert "Participants 40 (36 analysed, 4 excluded)" in plain
    assert re.search(r"catch accuracy 4\b", plain)  # exclusions by rule
    assert "Catch-trial accuracy per participant: mean" in plain
    assert "These factor effects describe the 18 trained models" in plain
    assert "PASSED" in plain and "max R-hat" in plain and "energy BFMI per chain" in plain
    diag = pd.read_csv(figure_study / "analysis" / "diagnostics.csv")
    assert f"{diag['r_hat'].max():.3f}" in plain
    assert "The sign agrees for 8 of 8 level effects" in plain
    assert "Posterior predictive misfits" in plain and "No group is flagged." in plain
    summary = pd.read_csv(figure_study / "analysis" / "proxy_calibration_summary.csv")
    r = summary.set_index("statistic").loc["pearson_r", "mean"]
    assert re.search(rf"Pearson r {r:.3f}", plain)


def test_failed_gate_report(study_copy):
    summary_path = study_copy / "analysis" / "summary.json"
    summary = json.loads(summary_path.read_text())
    summary |= {"gate_passed": False, "gate_problems": ["s_image: bulk ESS 120"]}
    summary_path.write_text(json.dumps(summary))
    for name in ("effects.csv", "alignment.csv", "ppc.csv"):
        (study_copy / "analysis" / name).unlink()
    text = write_report(study_copy).read_text()
    assert "FAILED" in text and "no effects are reported" in text
    assert "s_image: bulk ESS 120" in text
    assert 'id="figure-quality"' in text and 'id="figure-contrasts"' not in text


def test_missing_analysis_is_a_clear_error(study_copy):
    shutil.rmtree(study_copy / "analysis")
    with pytest.raises(FigureInputError, match="summary.json not found: run `hitkit analyze"):
        write_report(study_copy)
    result = CliRunner().invoke(report_command, ["--study", str(study_copy)])
    assert result.exit_code == 2
    assert "not found: run `hitkit analyze --study" in result.output


def test_cli_with_figure_options(study_copy):
    result = CliRunner().invoke(report_command, [
        "--study", str(study_copy), "--reference", "0.5", "--reference-label", "baseline",
        "--gallery-models", "m00-0,m01-0"])
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output and (study_copy / "report.html").is_file()


@pytest.mark.browser
def test_renders_offline_in_chromium(report):
    """Every image decodes and the page asks the network for nothing."""
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is missing: run `make setup` (apt-get install chromium)")
    path, _, _ = report
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            requests = []
            page.on("request", lambda r: requests.append(r.url))
            page.goto(path.as_uri())
            widths = page.eval_on_selector_all("img", "els => els.map(e => e.naturalWidth)")
            overflow = page.evaluate(
                "document.documentElement.scrollWidth > document.documentElement.clientWidth")
        finally:
            browser.close()
    assert len(widths) == len(FIGURES) and all(w > 0 for w in widths)
    assert [u for u in requests if not u.startswith(("file:", "data:"))] == []
    assert not overflow  # nothing wider than the window
