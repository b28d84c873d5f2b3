"""`hitkit figures`: every figure built from a small analysed study, checked element by
element (labels, points, bars, panels, images, reference line, correlation text)."""

import json
import shutil

import matplotlib.colors as mcolors
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

from analysis.figures import (
    FIGURES,
    FigureInputError,
    FigureOptions,
    FigureSkipped,
    StudyInputs,
    alignment_by_factor,
    contrast_forest,
    iri_gallery,
    participant_quality,
    ppc_plot,
    proxy_vs_human,
    write_figures,
)
from analysis.figures.proxy import correlations
from analysis.figures.style import DOUBLE, PALETTE, PNG_DPI, SINGLE, paper_style
from analysis.proxy_calibration import read_proxy
from hitkit.cli.analysis import figures as figures_command


@pytest.fixture
def study_copy(figure_study, tmp_path):
    """A private copy of the analysed study, to delete or change files in."""
    return shutil.copytree(figure_study, tmp_path / "study")


def build(study, name, **options):
    return FIGURES[name].build(StudyInputs(study), FigureOptions(**options))


def alignment_csv(study):
    return pd.read_csv(study / "analysis" / "alignment.csv", dtype={"epochs": str})


def model_lines(ax):
    return [line for line in ax.lines if str(line.get_gid()).startswith("model:")]


def same_colour(a, b):
    return np.allclose(mcolors.to_rgba(a)[:3], mcolors.to_rgba(b)[:3])


def legend_rows(legend):
    """The legend's entries row by row (matplotlib fills it column by column), blanks out."""
    texts = [t.get_text() for t in legend.get_texts()]
    ncols = legend._ncols
    n_rows = -(-len(texts) // ncols)
    columns = [texts[c * n_rows:(c + 1) * n_rows] for c in range(ncols)]
    return [[col[r] for col in columns if r < len(col) and col[r]] for r in range(n_rows)]


def laid_out(fig):
    """Draw the figure as it is saved (paper style, constrained layout applied)."""
    with paper_style():
        fig.canvas.draw()
    return fig.canvas.get_renderer()


def assert_inside(fig, artists, slack=1.0):
    """Every artist's box lies within the figure (to `slack` pixels)."""
    renderer = laid_out(fig)
    box = fig.bbox
    for artist in artists:
        if not artist.get_visible() or (hasattr(artist, "get_text") and not artist.get_text()):
            continue
        ext = artist.get_window_extent(renderer)
        assert ext.x0 >= box.x0 - slack and ext.x1 <= box.x1 + slack, (artist, ext, box)
        assert ext.y0 >= box.y0 - slack and ext.y1 <= box.y1 + slack, (artist, ext, box)


def x_ticks(ax):
    """The x tick labels drawn (within the view limits)."""
    low, high = sorted(ax.get_xlim())
    return [t for t in ax.get_xticklabels() if t.get_text() and low <= t.get_position()[0] <= high]


def axes_width(ax):
    """(inches, share of the figure's width) of the axes' data area, after the layout."""
    laid_out(ax.figure)
    share = ax.get_position().width
    return share * ax.figure.get_figwidth(), share


LONG = {"resnet18": "wide_resnet50_imagenet21k_finetuned_with_extra_layers",
        "vgg16": "very-deep-residual-convnet-with-attention-pooling",
        "vit-s": "vision-transformer-small-patch16-distilled",
        "standard": "standard-cross-entropy-training-with-label-smoothing",
        "adversarial": "adversarially-trained-pgd-linf-eps8-steps10"}


def long_levels(frame, columns):
    frame = frame.copy()
    for column in columns:
        frame[column] = frame[column].astype(str).map(lambda v: LONG.get(v, v))
    return frame


# ------------------------------------------------------------------ 1. alignment


def test_alignment_scatter(figure_study):
    fig = build(figure_study, "alignment")
    ax = fig.axes[0]
    assert ax.get_xlabel() == "Architecture"
    assert "alignment" in ax.get_ylabel() and "94 % HDI" in ax.get_ylabel()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["resnet18", "vgg16", "vit-s"]
    lines = model_lines(ax)
    assert len(lines) == 18  # one point per model
    table = alignment_csv(figure_study)
    models = table[table["kind"] == "model"].set_index("name")
    for line in lines:
        model = models.loc[line.get_gid().split(":", 1)[1]]
        assert line.get_ydata()[0] == pytest.approx(model["alignment_mean"])
        colour = PALETTE[0] if model["training"] == "standard" else PALETTE[1]
        assert same_colour(line.get_color(), colour)
    # the HDI bars: one vertical segment per model, from HDI low to high
    segments = [seg for coll in ax.collections for seg in coll.get_segments()]
    assert len(segments) == 18
    lows = sorted(float(min(s[:, 1])) for s in segments)
    assert lows == pytest.approx(sorted(models["alignment_hdi_low"]))
    # training colours, then epochs markers in numeric order (the study lists 25, 100, 50),
    # on one row or a row per factor
    legend = [t for row in legend_rows(fig.legends[0]) for t in row]
    assert legend == ["training:", "standard", "adversarial", "epochs:", "25", "50", "100"]
    bold = [t.get_text() for t in fig.legends[0].get_texts() if t.get_fontweight() == "bold"]
    assert bold == ["training:", "epochs:"]
    assert ax.get_ylim()[0] <= 0.0  # chance stays in view


def test_alignment_scatter_factor_options(figure_study):
    fig = build(figure_study, "alignment", x_factor="training", group_factor="architecture")
    ax = fig.axes[0]
    assert ax.get_xlabel() == "Training"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["standard", "adversarial"]
    assert legend_rows(fig.legends[0])[0][0] == "architecture:"
    with pytest.raises(FigureSkipped, match="not in \\[analysis\\].factors"):
        build(figure_study, "alignment", x_factor="optimizer")


def test_alignment_legend_fits_the_figure(figure_study):
    """Headed legend rows stay inside the single-column figure, for long level names too
    (a row per factor, then wrapped); the axes keep most of the width."""
    table = alignment_csv(figure_study)
    for frame in (table, long_levels(table, ["architecture", "training"])):
        fig = alignment_by_factor(frame, "architecture", "training", "epochs", width=SINGLE,
                                  marker_order=["25", "50", "100"])
        legend = fig.legends[0]
        assert_inside(fig, [legend, *legend.get_texts(), *x_ticks(fig.axes[0]),
                            fig.axes[0].xaxis.label])
        rows = legend_rows(legend)
        levels = list(dict.fromkeys(frame.loc[frame["kind"] == "model", "training"]))
        assert [t for row in rows for t in row] == ["training:", *levels, "epochs:", "25", "50",
                                                    "100"]
        if frame is not table:
            assert len(rows) >= 2  # one row would be far wider than the figure
        inches, share = axes_width(fig.axes[0])
        assert share >= 0.6 and inches >= 2.0


def test_alignment_long_tick_labels_wrap_or_slant(figure_study):
    table = long_levels(alignment_csv(figure_study), ["architecture"])
    fig = alignment_by_factor(table, "architecture", "training", width=SINGLE)
    ax = fig.axes[0]
    ticks = ax.get_xticklabels()
    assert all(t.get_text().replace("\n", "") in "".join(LONG.values()) or "…" in t.get_text()
               for t in ticks)
    assert_inside(fig, [*ticks, ax.xaxis.label, *fig.legends[0].get_texts()])
    # neighbouring level names do not overlap
    renderer = laid_out(fig)
    boxes = [t.get_window_extent(renderer) for t in ticks]
    if not ticks[0].get_rotation():
        assert all(a.x1 <= b.x0 for a, b in zip(boxes, boxes[1:], strict=False))
    assert axes_width(ax)[1] >= 0.6


# ------------------------------------------------------------ 2. ordered factor


def test_ordered_factor_with_reference(figure_study):
    fig = build(figure_study, "alignment-ordered", reference=0.45,
                reference_label="supervised baseline")
    ax = fig.axes[0]
    assert ax.get_xlabel() == "Epochs"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["25", "50", "100"]  # numeric
    levels = [line for line in ax.lines if line.get_gid() == "levels"]
    assert len(levels) == 1
    table = alignment_csv(figure_study).set_index("name")
    expected = [table.loc[f"epochs={lv}", "alignment_mean"] for lv in ("25", "50", "100")]
    assert levels[0].get_ydata() == pytest.approx(expected)
    reference = [line for line in ax.lines if line.get_gid() == "reference"]
    assert len(reference) == 1 and reference[0].get_ydata()[0] == pytest.approx(0.45)
    assert "supervised baseline" in [t.get_text() for t in fig.legends[0].get_texts()]
    assert len(model_lines(ax)) == 18


def test_ordered_factor_order_option(figure_study):
    fig = build(figure_study, "alignment-ordered", ordered_factor="epochs",
                order=["100", "25", "50"])
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["100", "25", "50"]
    assert not [line for line in ax.lines if line.get_gid() == "reference"]
    with pytest.raises(FigureSkipped, match="level\\(s\\) 200"):
        build(figure_study, "alignment-ordered", ordered_factor="epochs", order=["200"])


def test_ordered_factor_skipped_with_message(study_copy, monkeypatch):
    monkeypatch.setattr("analysis.figures.detect_ordered", lambda factors: None)
    lines = []
    written = write_figures(study_copy, only=["alignment-ordered"], echo=lines.append)
    assert written == []
    assert "alignment-ordered: skipped" in lines[0]
    assert "no ordered factor" in lines[0] and "--ordered-factor" in lines[0]
    with pytest.raises(FigureSkipped, match="'seed' is not in"):
        build(study_copy, "alignment-ordered", ordered_factor="seed")


# ------------------------------------------------------------------ 3. contrasts


def test_contrast_forest(figure_study):
    effects = pd.read_csv(figure_study / "analysis" / "effects.csv")
    fig = build(figure_study, "contrasts")
    ax = fig.axes[0]
    pairwise = effects[effects["kind"] == "pairwise"].reset_index(drop=True)
    points = [line for line in ax.lines if str(line.get_gid()).startswith("contrast:")]
    assert len(points) == len(pairwise) == 7  # 3 + 1 + 3
    xs = sorted(float(line.get_xdata()[0]) for line in points)
    assert xs == pytest.approx(sorted(pairwise["alignment_mean"]))
    zero = [line for line in ax.lines if line.get_gid() == "zero"]
    assert len(zero) == 1 and list(zero[0].get_xdata()) == [0, 0]
    assert "chance-corrected" in ax.get_xlabel() and "94 % HDI" in ax.get_xlabel()
    headings = [t.get_text() for t in ax.texts if t.get_gid() == "heading"]
    assert headings == ["Architecture", "Training", "Epochs"]
    probabilities = [t.get_text() for t in ax.texts if t.get_gid() == "p_gt_0"]
    assert sorted(probabilities) == sorted(f"{p:.2f}" for p in pairwise["alignment_p_gt_0"])
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert "adversarial − standard" in labels
    # blue where the HDI excludes 0, grey where it spans it
    for line in points:
        row = pairwise.iloc[int(line.get_gid().split(":")[1])]
        clear = row.alignment_hdi_low > 0 or row.alignment_hdi_high < 0
        assert same_colour(line.get_color(), PALETTE[0] if clear else "#7F7F7F")


def test_contrast_forest_all_kinds(figure_study):
    effects = pd.read_csv(figure_study / "analysis" / "effects.csv")
    fig = contrast_forest(effects, "all", ["architecture", "training", "epochs"])
    points = [line for line in fig.axes[0].lines if str(line.get_gid()).startswith("contrast:")]
    assert len(points) == 7 + 8
    assert "vgg16 vs mean" in [t.get_text() for t in fig.axes[0].get_yticklabels()]


def test_contrast_forest_long_level_names(figure_study):
    """Long level names widen the figure (at most to the double column) and, beyond that,
    wrap; the data keep their width and no label leaves the figure."""
    effects = pd.read_csv(figure_study / "analysis" / "effects.csv")
    for name, long in LONG.items():
        effects["contrast"] = effects["contrast"].str.replace(name, long, regex=False)
    fig = contrast_forest(effects, "all", ["architecture", "training", "epochs"])
    ax = fig.axes[0]
    assert SINGLE < fig.get_figwidth() <= DOUBLE
    inches, share = axes_width(ax)
    assert inches >= 1.5 and share >= 0.2
    assert_inside(fig, [*ax.get_yticklabels(), *ax.texts, ax.xaxis.label,
                        *fig.legends[0].get_texts()])
    # short names: the single column as before
    fig = contrast_forest(pd.read_csv(figure_study / "analysis" / "effects.csv"))
    assert fig.get_figwidth() == SINGLE


# ------------------------------------------------------------------ 4. gallery


def test_gallery_rows_columns_and_images(figure_study):
    inputs = StudyInputs(figure_study)
    fig = FIGURES["gallery"].build(inputs, FigureOptions())
    assert len(fig.axes) == 12 * 4  # the first 12 of 18 models x target, seed, 2 losses
    assert any("first 12 of 18" in note for note in inputs.notes)
    titles = [ax.get_title() for ax in fig.axes[:4]]
    assert titles == ["target", "seed", "reg free", "tv"]
    assert all(len(ax.images) == 1 for ax in fig.axes)
    assert fig.axes[0].get_ylabel().startswith("m00-0\n(resnet18")
    # the IRI cell shows the stored PNG of that model, loss, target and seed
    manifest = pd.read_parquet(figure_study / "manifest.parquet")
    row = manifest[(manifest.model == "m00-0") & (manifest.loss == "tv")
                   & (manifest.target_id == "img0000")].iloc[0]
    stored = np.asarray(Image.open(figure_study / row.uri).convert("RGB"))
    assert np.array_equal(np.asarray(fig.axes[3].images[0].get_array()), stored)


def test_gallery_options(figure_study):
    fig = build(figure_study, "gallery", gallery_models=["m04-0", "m10-0"],
                gallery_target="img0002")
    assert len(fig.axes) == 2 * 4
    assert fig.axes[4].get_ylabel().startswith("m10-0")
    with pytest.raises(FigureSkipped, match="nope"):
        build(figure_study, "gallery", gallery_target="nope")


def test_gallery_skipped_without_manifest(study_copy):
    (study_copy / "manifest.parquet").unlink()
    lines = []
    write_figures(study_copy, only=["gallery"], echo=lines.append)
    assert "gallery: skipped" in lines[0] and "manifest.parquet not found" in lines[0]


def test_gallery_skipped_when_an_image_is_missing(study_copy):
    shutil.rmtree(study_copy / "iris" / "targets")
    with pytest.raises(FigureSkipped, match="img0000"):
        build(study_copy, "gallery")


def test_gallery_long_labels_stay_inside(figure_study):
    manifest = pd.read_parquet(figure_study / "manifest.parquet")
    models = ["m00-0", "m01-0"]
    labels = {m: f"{m}-{'x' * 40}\n({' · '.join(LONG.values())})" for m in models}
    fig = iri_gallery(manifest, figure_study, models=models, row_labels=labels)
    assert fig.get_figwidth() <= DOUBLE + 0.05
    ylabels = [ax.yaxis.label for ax in fig.axes if ax.get_ylabel()]
    assert len(ylabels) == 2 and ylabels[0].get_text().startswith("m00-0")
    assert_inside(fig, ylabels)


# ------------------------------------------------------------------ 5. proxy


def test_proxy_against_humans(figure_study):
    fig = build(figure_study, "proxy")
    ax = fig.axes[0]
    assert len(model_lines(ax)) == 18
    assert "proxy" in ax.get_xlabel().lower() and "alignment" in ax.get_ylabel()
    summary = pd.read_csv(figure_study / "analysis" / "proxy_calibration_summary.csv")
    s = summary.set_index("statistic")
    title = ax.get_title(loc="left")
    assert f"Pearson r = {s.loc['pearson_r', 'mean']:.2f} [{s.loc['pearson_r', 'hdi_low']:.2f}" \
        in title
    assert f"Spearman ρ = {s.loc['spearman_rho', 'mean']:.2f}" in title
    line = [ln for ln in ax.lines if ln.get_gid() == "calibration"][0]
    x = line.get_xdata()
    assert line.get_ydata() == pytest.approx(s.loc["intercept", "mean"] + s.loc["slope", "mean"] * x)


def test_proxy_without_calibration_uses_posterior_means(figure_study):
    alignment = alignment_csv(figure_study)
    proxy = read_proxy(figure_study / "proxy.csv")
    fig = proxy_vs_human(alignment, proxy)
    models = alignment[alignment["kind"] == "model"]
    raw = pd.read_csv(figure_study / "proxy.csv")
    per_model = raw.groupby("model").apply(
        lambda g: (g["alignment"] * g["n_iris"]).sum() / g["n_iris"].sum(), include_groups=False)
    r, rho = correlations(per_model.loc[models["name"]].to_numpy(),
                          models["alignment_mean"].to_numpy())
    assert r == pytest.approx(np.corrcoef(per_model.loc[models["name"]], models["alignment_mean"])[0, 1])
    title = fig.axes[0].get_title(loc="left")
    assert f"Pearson r = {r:.2f}" in title and f"Spearman ρ = {rho:.2f}" in title
    assert "share of IRIs" in fig.axes[0].get_xlabel()


def test_proxy_falls_back_to_the_margin_when_every_share_is_equal(figure_study, tmp_path):
    raw = pd.read_csv(figure_study / "proxy.csv")
    raw["alignment"] = 0.0  # the demo's case: no IRI is nearer its target than its seed
    raw["mean_margin"] = -1.0 + 0.01 * np.arange(len(raw))
    path = tmp_path / "proxy.csv"
    raw.to_csv(path, index=False)
    proxy = read_proxy(path)
    assert set(proxy["measure"]) == {"mean_margin"}
    fig = proxy_vs_human(alignment_csv(figure_study), proxy)
    assert "mean margin" in fig.axes[0].get_xlabel()
    xs = sorted(round(float(line.get_xdata()[0]), 6) for line in fig.axes[0].lines
                if str(line.get_gid()).startswith("model:"))
    assert len(set(xs)) > 1


def test_proxy_skipped_without_proxy_csv(study_copy):
    (study_copy / "proxy.csv").unlink()
    lines = []
    write_figures(study_copy, only=["proxy"], echo=lines.append)
    assert "proxy: skipped" in lines[0] and "proxy.csv not found" in lines[0]
    assert "hitkit proxy" in lines[0]


# ------------------------------------------------------------------ 6. quality


def test_participant_quality(figure_study):
    responses = pd.read_parquet(figure_study / "responses.parquet")
    fig = build(figure_study, "quality")
    assert len(fig.axes) == 3
    catch, rt, side = fig.axes
    participants = responses["participant"].nunique()
    excluded = responses.groupby("participant")["excluded"].any().sum()

    def total(ax):
        # stacked: the top layer's heights are cumulative, so take each bin's maximum
        tops = {}
        for patch in ax.patches:
            key = round(patch.get_x(), 9)
            tops[key] = max(tops.get(key, 0), patch.get_y() + patch.get_height())
        return sum(tops.values())

    assert total(catch) == participants == 40
    assert total(rt) == len(responses)
    assert total(side) == participants  # every participant answered 2AFC trials
    thresholds = {ax: [ln.get_xdata()[0] for ln in ax.lines if ln.get_gid() == "threshold"]
                  for ax in fig.axes}
    assert thresholds[catch] == [0.8] and thresholds[rt] == [300] and thresholds[side] == [0.85]
    assert rt.get_xscale() == "log"
    assert catch.get_xlabel() == "Catch-trial accuracy"
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend[1] == f"excluded ({excluded})" and excluded == 4


def test_exclusions_by_rule_read_the_codes(figure_study):
    from analysis.figures.quality import exclusions_by_rule, participant_summary

    summary = participant_summary(StudyInputs(figure_study).responses)
    excluded = summary[summary["excluded"]]
    assert len(excluded) == 4
    assert all(codes == ["catch_accuracy"] for codes in excluded["exclusion_rules"])
    assert all(codes == [] for codes in summary[~summary["excluded"]]["exclusion_rules"])
    assert exclusions_by_rule(summary) == {"catch accuracy": 4}


def test_exclusions_by_rule_count_labels_not_words():
    """Codes decide; the reason text is not parsed (here it disagrees with the codes)."""
    from analysis.figures.quality import exclusions_by_rule, participant_summary

    rows = [("p1", True, ["catch_accuracy", "side_bias"]), ("p1", True, ["side_bias"]),
            ("p2", True, ["fast_responses"]), ("p3", True, ["from_a_newer_hitkit"]),
            ("p4", False, []), ("p5", True, [])]
    responses = pd.DataFrame([
        {"participant": p, "kind": "main", "task": "2afc", "correct": True, "rt_ms": 900.0,
         "choice": 0, "excluded": excluded, "exclusion_rules": codes,
         "exclusion_reason": "median RT 212 ms < 400 ms" if excluded else None}
        for p, excluded, codes in rows])
    summary = participant_summary(responses).set_index("participant")
    assert summary.loc["p1", "exclusion_rules"] == ["catch_accuracy", "side_bias"]
    assert exclusions_by_rule(summary.reset_index()) == {
        "catch accuracy": 1, "side bias": 1, "fast responses": 1, "from_a_newer_hitkit": 1,
        "unstated rule": 1}


def test_an_export_without_rule_codes_reads_and_shows_no_breakdown(study_copy):
    """responses.parquet from before `exclusion_rules`: it still reads (the column comes
    back empty) and its exclusions are counted as not recorded, not guessed from text."""
    import pyarrow.parquet as pq

    from analysis.figures.quality import exclusions_by_rule, participant_summary

    path = study_copy / "responses.parquet"
    pq.write_table(pq.read_table(path).drop_columns(["exclusion_rules"]), path)
    responses = StudyInputs(study_copy).responses
    assert responses["exclusion_rules"].isna().all()
    summary = participant_summary(responses)
    assert summary["exclusion_rules"].isna().all()
    assert exclusions_by_rule(summary) == {"rule not recorded": 4}
    assert len(build(study_copy, "quality").axes) == 3


def synthetic_responses(catch_per_participant, participants=30, seed=0):
    """Responses of `participants`: 10 2AFC trials and the given number of catch trials
    each; the first three excluded."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(participants):
        excluded = p < 3
        n_catch = catch_per_participant(p) if callable(catch_per_participant) \
            else catch_per_participant
        for t in range(10 + n_catch):
            catch = t >= 10
            rows.append({"participant": f"p{p:02d}", "kind": "catch" if catch else "main",
                         "task": "2afc", "correct": bool(rng.random() < 0.8),
                         "rt_ms": float(rng.uniform(300, 2000)),
                         "choice": "left" if rng.random() < 0.5 else "right",
                         "excluded": excluded,
                         "exclusion_reason": "catch accuracy 0.50 < 0.8" if excluded else "",
                         "exclusion_rules": ["catch_accuracy"] if excluded else []})
    return pd.DataFrame(rows)


def test_catch_accuracy_one_bar_per_value():
    """2 catch trials each: accuracy is 0, 0.5 or 1, so one narrow bar on each value seen,
    included and excluded stacked, and the axis from 0 to 1 (a small pad either side)."""
    responses = synthetic_responses(2)
    fig = participant_quality(responses)
    catch = fig.axes[0]
    bars = [p for p in catch.patches if p.get_gid() == "catch"]
    centres = {round(b.get_x() + b.get_width() / 2, 9) for b in bars}
    accuracy = responses[responses["kind"] == "catch"].groupby("participant")["correct"].mean()
    assert centres == set(accuracy.round(9)) and centres <= {0.0, 0.5, 1.0}
    assert all(b.get_width() <= 0.1 for b in bars)
    tops = {}
    for b in bars:
        key = round(b.get_x(), 9)
        tops[key] = max(tops.get(key, 0), b.get_y() + b.get_height())
    assert sum(tops.values()) == 30
    counts = accuracy.value_counts()
    for value, n in counts.items():
        assert tops[round(value - bars[0].get_width() / 2, 9)] == n
    low, high = catch.get_xlim()
    assert -0.1 <= low < 0 and 1 < high <= 1.1


def test_catch_accuracy_histogram_for_many_values():
    """Many distinct accuracies (20 to 40 catch trials): a histogram between 0 and 1."""
    fig = participant_quality(synthetic_responses(lambda p: 20 + p % 21, participants=60))
    catch = fig.axes[0]
    bars = [p for p in catch.patches if p.get_height() > 0]
    assert len({round(b.get_x(), 9) for b in bars}) <= 20
    assert all(0 <= b.get_x() and b.get_x() + b.get_width() <= 1 + 1e-9 for b in bars)
    assert sum(b.get_height() for b in bars) == 60
    low, high = catch.get_xlim()
    assert -0.1 <= low < 0 and 1 < high <= 1.1


# ------------------------------------------------------------------ 7. PPC


def test_ppc_per_model(figure_study):
    ppc = pd.read_csv(figure_study / "analysis" / "ppc.csv")
    fig = build(figure_study, "ppc")
    ax = fig.axes[0]
    models = ppc[ppc["group"] == "model"]
    assert len(ax.get_yticklabels()) == len(models) == 18
    assert ax.get_yticklabels()[0].get_text().startswith("m00-0 (resnet18")
    assert len(ax.collections[0].get_segments()) == 18  # replicated intervals
    observed = [ln for ln in ax.lines if ln.get_gid() == "observed"][0]
    assert len(observed.get_xdata()) == 18 - int(models["flagged"].sum())
    assert f"{int(models['flagged'].sum())} of 18 flagged" in fig._suptitle.get_text()


def test_ppc_flags_a_misfit(figure_study):
    ppc = pd.read_csv(figure_study / "analysis" / "ppc.csv")
    ppc.loc[2, ["flagged", "observed_rate"]] = [True, 0.2]
    fig = ppc_plot(ppc)
    ax = fig.axes[0]
    flagged = [ln for ln in ax.lines if ln.get_gid() == "flagged"][0]
    assert list(flagged.get_xdata()) == [0.2] and list(flagged.get_ydata()) == [2]
    assert same_colour(ax.get_yticklabels()[2].get_color(), "#D55E00")
    assert "1 of 18 flagged" in fig._suptitle.get_text()


def test_ppc_long_labels_keep_the_data_readable(figure_study):
    """Long row labels widen the figure up to the double column, then wrap; the axes keep
    MIN_DATA inches, their ticks do not overlap and no text leaves the figure."""
    from analysis.figures.ppc import MIN_DATA

    ppc = pd.read_csv(figure_study / "analysis" / "ppc.csv")
    names = list(ppc.loc[ppc["group"] == "model", "level"])
    medium = {n: f"{n}-{'x' * 30}" for n in names}  # one line fits when widened
    long = {n: f"{n}-{'x' * 30} ({' · '.join(LONG.values())})" for n in names}
    for labels in (medium, long):
        fig = ppc_plot(ppc, labels=labels)
        ax = fig.axes[0]
        assert SINGLE < fig.get_figwidth() <= DOUBLE
        inches, share = axes_width(ax)
        assert inches >= MIN_DATA * 0.9 and share >= 0.2
        assert_inside(fig, [*ax.get_yticklabels(), ax.xaxis.label, *x_ticks(ax),
                            *fig.legends[0].get_texts()])
        renderer = laid_out(fig)
        ticks = [t.get_window_extent(renderer) for t in x_ticks(ax)]
        assert len(ticks) >= 2
        assert all(a.x1 < b.x0 for a, b in zip(ticks, ticks[1:], strict=False))
    texts = [t.get_text() for t in ax.get_yticklabels()]
    assert all(t.count("\n") == 1 for t in texts)  # the long labels: name / (levels)
    assert texts[0].startswith(f"{names[0]}-xxx")
    fig = ppc_plot(ppc, labels=medium)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == list(medium.values())


def test_model_labels_skip_levels_the_name_spells():
    from analysis.figures import _spells

    assert _spells("tiny_convnet-adversarial-crop-flip", "tiny-convnet")
    assert _spells("tiny_convnet-adversarial-crop-flip", "crop-flip")
    assert not _spells("m250-0", "25") and not _spells("m00-0", "resnet18")


# ------------------------------------------------------------------ writing


def test_write_figures_pdf_and_png(study_copy):
    lines = []
    written = write_figures(study_copy, FigureOptions(reference=0.4), echo=lines.append)
    names = {p.name for p in written}
    assert names == {f"{n}.{ext}" for n in FIGURES for ext in ("pdf", "png")}
    for path in written:
        head = path.read_bytes()[:8]
        assert head.startswith(b"%PDF") if path.suffix == ".pdf" else head == b"\x89PNG\r\n\x1a\n"
    assert lines[0].startswith("[1/7] alignment: wrote")
    assert sum(line.startswith("[") for line in lines) == 7
    # single-column width at 300 dpi; no temporary files left behind
    with Image.open(study_copy / "figures" / "alignment.png") as image:
        assert image.size[0] == round(3.3 * PNG_DPI)
    with Image.open(study_copy / "figures" / "quality.png") as image:
        assert image.size[0] == round(7.0 * PNG_DPI)
    assert not [p for p in (study_copy / "figures").iterdir() if p.name.startswith(".")]


def test_missing_analysis_file_is_a_clear_error(study_copy):
    (study_copy / "analysis" / "effects.csv").unlink()
    with pytest.raises(FigureInputError) as info:
        write_figures(study_copy, echo=None)
    message = str(info.value)
    assert message == (f"{study_copy / 'analysis' / 'effects.csv'} not found: run "
                       f"`hitkit analyze --study {study_copy}` first")
    assert not (study_copy / "figures").exists()  # nothing drawn before the check
    # figures that do not need it are still drawn
    assert write_figures(study_copy, only=["alignment"], echo=None)


def test_failed_gate_is_named(study_copy):
    summary = json.loads((study_copy / "analysis" / "summary.json").read_text())
    (study_copy / "analysis" / "summary.json").write_text(json.dumps(summary | {"gate_passed": False}))
    (study_copy / "analysis" / "alignment.csv").unlink()
    with pytest.raises(FigureInputError, match="did not pass the convergence gate"):
        write_figures(study_copy, echo=None)


def test_cli(study_copy):
    runner = CliRunner()
    result = runner.invoke(figures_command, ["--study", str(study_copy), "--only", "contrasts",
                                             "--contrasts", "all"])
    assert result.exit_code == 0, result.output
    assert "[1/1] contrasts: wrote" in result.output
    assert (study_copy / "figures" / "contrasts.pdf").is_file()

    result = runner.invoke(figures_command, ["--study", str(study_copy), "--only", "nope"])
    assert result.exit_code == 2 and "unknown figure(s) nope" in result.output

    (study_copy / "analysis" / "ppc.csv").unlink()
    result = runner.invoke(figures_command, ["--study", str(study_copy)])
    assert result.exit_code == 2
    assert "analysis/ppc.csv not found: run `hitkit analyze --study" in result.output

    result = runner.invoke(figures_command, ["--help"])
    assert "hitkit figures --study my-study" in result.output
