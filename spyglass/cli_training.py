"""`spyglass eval` and `spyglass finetune`: measure and improve the encoder on your own data."""

from __future__ import annotations

import json

import click

from spyglass.search.display import printable
from spyglass.search.settings import Settings

_DATA_OPTIONS = [
    click.argument("data", type=click.Path(exists=True)),
    click.option("--image-key", default="filepath", show_default=True, help="Image column of a CSV/TSV."),
    click.option("--caption-key", default="title", show_default=True, help="Caption column of a CSV/TSV."),
    click.option("--separator", help="Column separator of the table [tab for .tsv, else a comma]."),
    click.option("--model", "model_override", help="open_clip architecture or config JSON [SPYGLASS_MODEL]."),
    click.option("--pretrained", "pretrained_override", help="Weights: tag, file or folder [SPYGLASS_PRETRAINED]."),
    click.option("--batch-size", type=click.IntRange(min=1),
                 help="Images per batch [eval: SPYGLASS_BATCH_SIZE; finetune: 64, also the negatives per step]."),
    click.option("--no-progress", is_flag=True, help="No progress bar."),
]


def _data_options(function):
    for option in reversed(_DATA_OPTIONS):
        function = option(function)
    return function


def _read_data(data, image_key, caption_key, separator):
    from spyglass.training.datasets import load_dataset

    dataset = load_dataset(data, image_key=image_key, caption_key=caption_key, separator=separator)
    for problem in dataset.skipped[:20]:
        click.echo(f"skipping {problem}", err=True)
    if len(dataset.skipped) > 20:
        click.echo(f"... and {len(dataset.skipped) - 20:,} more skipped", err=True)
    return dataset


@click.command("eval")
@_data_options
@click.option("--template", "templates", multiple=True,
              help="Prompt template for class folders, with {label} (repeatable) [a photo of a {label}.].")
@click.option("--modes", "search_modes", is_flag=True,
              help="Also index the images into a scratch catalog and report text-to-image R@1/5/10 of each search "
                   "mode (visual, words, hybrid) through the real engine; captions are not indexed as words.")
@click.option("--json", "as_json", is_flag=True, help="Print open_clip's metric names as JSON.")
@click.pass_obj
def eval_command(settings: Settings, data, image_key, caption_key, separator, model_override,
                 pretrained_override, batch_size, no_progress, templates, search_modes, as_json) -> None:
    """Measure how well the model retrieves your own captioned images (or labels class folders).

    \b
    DATA is one of:
      a CSV/TSV with an image column and a caption column (filepath, title; paths relative to it),
      a folder where x.jpg has x.txt beside it (one caption per line, several allowed),
      class folders, DATA/<label>/*.jpg (zero-shot labelling: accuracy, macro precision/recall/F1).
    Prints text-to-image and image-to-text R@1/5/10 and mean and median rank. Uses the
    configured model, or --model/--pretrained (a fine-tuned folder, say). Never touches the index.
    """
    from spyglass.training.evaluate import evaluate
    from spyglass.search.model.encoder import encoder_for
    from spyglass.search.model.zero_shot import check_templates

    settings = settings.override(model=model_override, pretrained=pretrained_override, batch_size=batch_size)
    templates = check_templates(templates) if templates else None
    dataset = _read_data(data, image_key, caption_key, separator)
    encoder = encoder_for(settings)
    report = evaluate(dataset, encoder, settings, templates, progress=not no_progress)
    modes = None
    if search_modes:
        if dataset.kind != "captions":
            raise click.UsageError("--modes needs a captioned set: its captions are the queries")
        from spyglass.eval_modes import search_recall

        modes = search_recall(dataset, settings, lambda m: click.echo(m, err=True), progress=not no_progress)
    if as_json:
        click.echo(json.dumps({**report.as_json(), **({"search_modes": modes} if modes else {})}, indent=2))
        return
    for line in report.lines():
        click.echo(line)
    for mode, recall in (modes or {}).items():
        click.echo(f"search, {mode}: " + "  ".join(f"{k} {v:.3f}" for k, v in recall.items()))


@click.command()
@_data_options
@click.option("--out", type=click.Path(file_okay=False), required=True,
              help="Folder to write the model to (SPYGLASS_PRETRAINED=<it> loads it).")
@click.option("--lock-image/--unlock-image", "lock_image", default=True, show_default=True,
              help="Train only the text side (the index stays valid: no re-embedding), or the image side too.")
@click.option("--unlocked-blocks", type=click.IntRange(min=0), default=0,
              help="With --unlock-image: train only the last N image blocks (0: all of it).")
@click.option("--from-scratch", is_flag=True, help="Train from random weights (--model names the architecture).")
@click.option("--epochs", type=click.IntRange(min=1), help="Epochs at most [10; 5 unlocked; 60 from scratch].")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True),
              help="Peak learning rate, after a warm-up [1e-5; 5e-6 unlocked; 1e-3 from scratch].")
@click.option("--val-fraction", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.1,
              show_default=True, help="Images held out to measure each epoch on.")
@click.option("--patience", type=click.IntRange(min=1), default=5, show_default=True,
              help="Stop after this many epochs without better held-out recall (mean of R@1, R@5, R@10).")
@click.option("--blend", type=click.FloatRange(0, 1), default=1.0, show_default=True,
              help="Blend with the base weights (WiSE-FT): 0.5 is halfway; 1 keeps the trained weights.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the split, the order and the weights.")
@click.option("--force", is_flag=True, help="Write the model even if it is no better than the base, or replace DIR.")
@click.pass_obj
def finetune(settings: Settings, data, image_key, caption_key, separator, model_override, pretrained_override,
             batch_size, no_progress, out, lock_image, unlocked_blocks, from_scratch, epochs, lr, val_fraction,
             patience, blend, seed, force) -> None:
    """Fine-tune the model on your captioned images (contrastive, with open_clip's ClipLoss).

    \b
    Holds out --val-fraction of the images, measures the base model and every epoch on them,
    stops early, and writes --out as a folder that SPYGLASS_PRETRAINED loads, with metrics.json
    (before, every epoch, after). The default --lock-image trains the text side only: the
    image vectors of the live index stay valid, and `spyglass reindex` makes the new model live
    without re-embedding a single image. An output no better than the base is refused unless --force.
    """
    from pathlib import Path

    from spyglass.training.finetune import FinetuneOptions, finetune as run_finetune

    mode = "from-scratch" if from_scratch else ("lock-image" if lock_image else "unlock-image")
    settings = settings.override(model=model_override, pretrained=pretrained_override)
    options = FinetuneOptions(out=Path(out), mode=mode, epochs=epochs, batch_size=batch_size or 64, lr=lr,
                              val_fraction=val_fraction, seed=seed, patience=patience, unlocked_blocks=unlocked_blocks,
                              blend=blend, force=force, progress=not no_progress)
    dataset = _read_data(data, image_key, caption_key, separator)
    result = run_finetune(dataset, settings, options, echo=lambda m: click.echo(m, err=True))
    click.echo(f"wrote {printable(str(result.out))}: held-out text-to-image R@5 {result.before['text_to_image_R@5']:.3f} "
               f"-> {result.after['text_to_image_R@5']:.3f}, R@1 {result.before['text_to_image_R@1']:.3f} -> "
               f"{result.after['text_to_image_R@1']:.3f} in {result.seconds:.0f} s "
               f"(best epoch {result.best_epoch}); use it with SPYGLASS_PRETRAINED={printable(str(result.out))}")


