"""Annotate (image, caption) pairs into ArrayRecord training shards.

  python launch/prepare_data.py --source samples --out data/prepared/samples
  python launch/prepare_data.py --source "webdataset:laion/{00000..00099}.tar" --out data/laion \
      --shard_index 3 --num_shards 8          # one of 8 processes; reruns resume
  python launch/prepare_data.py --merge --out data/laion   # manifest.json once all 8 are done

Source specs: samples, jsonl:PATH, folder:DIR, webdataset:GLOB, tfds:NAME[:split] (with
--data_dir), hf:ID_OR_PATH[:split]; see regionedit_jax/data/sources.py.
"""

from absl import app, flags, logging

from regionedit_jax import cli
from regionedit_jax.data import annotate

_SOURCE = flags.DEFINE_string("source", None, "Source spec, e.g. samples or webdataset:GLOB.")
_OUT = flags.DEFINE_string("out", None, "Output folder for shards and manifests.", required=True)
_SHARD_INDEX = flags.DEFINE_integer("shard_index", 0, "This process's index.")
_NUM_SHARDS = flags.DEFINE_integer("num_shards", 1, "How many processes split the source.")
_PER_SHARD = flags.DEFINE_integer("records_per_shard", 1000, "Input pairs per output shard.")
_MAX_SIDE = flags.DEFINE_integer("max_side", 512, "Longer image side after re-encoding.")
_DESCRIBE = flags.DEFINE_string("describe", "rules", "Instruction writer: a backend name or a JSON config.")
_LIMIT = flags.DEFINE_integer("limit", None, "Read at most N of this process's pairs.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the instruction writer.")
_WORKERS = flags.DEFINE_integer("workers", None, "Image threads (default: CPUs, at most 8).")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "tfds: the datasets' root folder.")
_IMAGE_FIELD = flags.DEFINE_string("image_field", None, "JSONL key / tfds feature / HF column.")
_CAPTION_FIELD = flags.DEFINE_string("caption_field", None, "JSONL key / tfds feature / HF column of the caption.")
_MERGE = flags.DEFINE_bool("merge", False, "Only merge the per-process manifests in --out.")
_PROGRESS = flags.DEFINE_bool("progress", True, "Show a progress bar.")


@cli.one_line_errors
def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # orbax and jax log every step at INFO
    if _MERGE.value:
        totals = annotate.merge(_OUT.value)["totals"]
        print(f"{_OUT.value}/manifest.json: {totals['records']} records, {totals['rejected']} rejected")
        return
    if not _SOURCE.value:
        raise ValueError("give --source (e.g. --source samples), or --merge to merge the manifests in --out.")
    options = {"data_dir": _DATA_DIR.value, "image_field": _IMAGE_FIELD.value, "caption_field": _CAPTION_FIELD.value}
    settings = annotate.Settings(
        source=_SOURCE.value,
        out=_OUT.value,
        shard_index=_SHARD_INDEX.value,
        num_shards=_NUM_SHARDS.value,
        records_per_shard=_PER_SHARD.value,
        max_side=_MAX_SIDE.value,
        describe=_DESCRIBE.value,
        seed=_SEED.value,
        limit=_LIMIT.value,
        source_options={k: v for k, v in options.items() if v is not None},
    )
    if _WORKERS.value is not None and _WORKERS.value < 1:
        raise ValueError(f"--workers {_WORKERS.value}: must be an integer >= 1, or unset.")
    manifest = annotate.annotate(settings, workers=_WORKERS.value, progress=_PROGRESS.value)
    totals, run = manifest["totals"], manifest["run"]
    if totals["records"] == 0:
        raise ValueError(
            f"no records were written: {totals['inputs']} input pairs, rejected as {totals['rejects'] or 'nothing'}"
            f" (see {settings.out}/manifest-{settings.shard_index:05d}.json). Check --source"
            f"{', --image_field' if _IMAGE_FIELD.value else ''} and the pairs themselves."
        )
    print(
        f"process {settings.shard_index}: {totals['records']} records, {totals['rejected']} "
        f"rejected {totals['rejects']}; this run {run['pairs']} pairs in {run['seconds']} s"
    )


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
