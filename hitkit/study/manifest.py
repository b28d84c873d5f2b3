"""manifest.parquet: one row per IRI, written by `hitkit generate`."""

import pyarrow as pa

from hitkit.study.tables import Column, TableSchema

MANIFEST = TableSchema(
    name="manifest",
    owner="hitkit.study.manifest",
    columns=(
        Column("iri_id", pa.string(), "stable ID of the IRI: a hash of model, loss, target and seed"),
        Column("model", pa.string(), "model name from [[models]].name"),
        Column("arch", pa.string(), "architecture name the model was built from"),
        Column("layer", pa.string(), "layer whose representation was matched (node name)"),
        Column("loss", pa.string(), "loss name from [[generation.losses]].name"),
        Column("loss_kind", pa.string(), "reg_free, regularized or adversarial"),
        Column("loss_spec", pa.string(), "the loss settings as JSON, for reproduction"),
        Column("target_id", pa.string(), "ID of the target image"),
        Column("target_uri", pa.string(), "where the target image is stored"),
        Column("seed_id", pa.string(), "ID of the seed (starting) image"),
        Column("seed_kind", pa.string(), "gaussian, uniform, constant or image"),
        Column("seed_uri", pa.string(), "where the seed image is stored"),
        Column("uri", pa.string(), "where the IRI's PNG is stored (store path or s3:// URL)"),
        Column("sha256", pa.string(), "SHA-256 of the PNG file's bytes"),
        Column("width", pa.int32(), "image width in pixels"),
        Column("height", pa.int32(), "image height in pixels"),
        Column("rep_error", pa.float64(),
               "final relative L2 error at the layer, ||f(x)-f(t)||/||f(t)||, re-measured in fp32"),
        Column("dist_target", pa.float64(), "perceptual distance between IRI and target"),
        Column("dist_seed", pa.float64(), "perceptual distance between IRI and seed"),
        Column("distance_metric", pa.string(), "metric of dist_target/dist_seed (e.g. ssim, lpips-alex)"),
        Column("steps", pa.int32(), "optimisation steps run"),
        Column("precision", pa.string(), "fp32, or bf16 with an fp32 finishing phase"),
        Column("device", pa.string(), "device the IRI was made on (e.g. cpu, NVIDIA H100)"),
        Column("wall_time_s", pa.float64(), "wall time of the batch that made the IRI, in seconds"),
        Column("config_hash", pa.string(), "SHA-256 of the generation-relevant study config"),
        Column("versions", pa.string(), "library versions as JSON (hitkit, torch, torchvision)"),
        Column("created_at", pa.timestamp("us", tz="UTC"), "when the row was written (UTC)"),
    ),
)

MANIFEST_FILE = "manifest.parquet"  # the table's file name in a study folder
