"""``labelspace train``: fine-tune a model from a YAML config and/or flags, tuning its thresholds on dev."""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Collection
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from labelspace import parallel as distributed
from labelspace.commands.common import console, load_dataset, metrics_table, warn_dropped_labels
from labelspace.data import LabeledDataset, PairDataset
from labelspace.errors import RunInterrupted
from labelspace.files import read_text
from labelspace.models import LabelspaceModel
from labelspace.models.encoder import recover_folder
from labelspace.recipes import (
    DATA_SIZE_SETTINGS,
    GUIDED_LOSSES,
    RECOMMENDED,
    TrainConfig,
    build_losses,
    fit_to_data,
    head_kind_for,
    parse_loss_terms,
)
from labelspace.training import Trainer, TrainingArguments
from labelspace.training.arguments import SCORING_CHOICES, default_values
from labelspace.training.scoring import describe_scoring

TRAIN_EPILOG = (
    "Example: labelspace train --train train.tsv --dev dev.tsv --out runs/x   (the recommended recipe)\n\n"
    "Example: labelspace train --model minilm --train train.tsv --dev dev.tsv --loss multi_similarity+bce "
    "--sampler balanced --epochs 2 --batch-size 64 --out runs/x\n\n"
    "Example: labelspace train --config run.yaml --epochs 1"
)


#: What makes a folder a run folder (written by `run_training`).
RUN_MARKERS: tuple[str, ...] = ("config.yaml", "model", "checkpoints", "train_log.jsonl", "metrics.json")


def check_run_folder(out: Path, *, resume: bool, overwrite: bool, inputs: dict[str, str | None] | None = None) -> bool:
    """Refuse to train into a non-empty folder unless ``resume`` or ``overwrite``; True when it must be cleared.

    An existing run is continued only with ``--resume`` and replaced only with ``--overwrite``, so a
    forgotten flag never mixes two runs (old checkpoints, appended logs); a non-empty folder that is not
    a run needs ``--overwrite`` too.
    """
    if resume and overwrite:
        raise ValueError("--resume continues the run in --out and --overwrite replaces it: give one of them")
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder")
    if not out.is_dir() or not any(out.iterdir()):
        if resume:
            raise ValueError(f"--resume: {out} holds no run to continue")
        return False
    if resume:
        return False
    is_run = any((out / marker).exists() for marker in RUN_MARKERS)
    if overwrite:
        folder = out.resolve()
        for option, value in (inputs or {}).items():
            if value and Path(value).exists() and Path(value).resolve().is_relative_to(folder):
                raise ValueError(f"--overwrite would delete {option} {value}, which lies inside --out {out}")
    else:
        held = "a run" if is_run else "files that are not a labelspace run"
        raise ValueError(f"--out {out} already holds {held}: pass --resume to continue it or --overwrite to replace it")
    return True


def run_training(
    config: TrainConfig,
    *,
    resume: bool = False,
    overwrite: bool = False,
    show_progress: bool = True,
    print_table: bool = True,
    max_seq_length_from_data: bool = False,
    fitted_settings: Collection[str] = (),
) -> dict[str, Any]:
    """Train per ``config``: returns the run summary (paths, dev metrics before/after threshold tuning).

    With ``max_seq_length_from_data`` (``labelspace train`` without ``--max-seq-length``, in flags or
    config file), ``config.max_seq_length`` is replaced by `Encoder.suggest_max_seq_length` of the training
    texts (their 95th percentile token count, up to the model's limit), which is printed and saved in
    ``config.yaml``.

    ``fitted_settings`` (of `DATA_SIZE_SETTINGS`: ``labelspace train`` passes those given neither as a flag
    nor in the config file) are replaced by `labelspace.recipes.fit_to_data` of labeled training data
    (epochs, learning rates, warmup and early stopping scaled to its size), printed and saved in ``config.yaml``.

    Everything that can be checked before training is: the data, the settings, and whether each loss
    can learn from the data it gets; a mismatch is an error before the run folder is written. The
    thresholds are tuned on dev inside the run (``TrainingArguments.tune_thresholds``), at every
    evaluation, so the best model is picked on the decisions it ships with; the `Trainer` writes
    ``model/`` and ``metrics.json`` once, at the end.
    """
    config.validate()
    inputs = {
        "--train": config.train,
        "--dev": config.dev,
        "--model": config.model,
        "--guide-model": config.guide_model,
        "--labels-file": config.data.get("labels_file"),
    }
    clear_out = check_run_folder(Path(config.out), resume=resume, overwrite=overwrite, inputs=inputs)
    if resume:  # finish or roll back saves a kill left half done: model/, best-model/, checkpoints/*
        for folder in (Path(config.out), Path(config.out) / "checkpoints"):
            recover_folder(folder)
    distributed.init_from_environment()  # under torchrun: know our rank before writing anything
    train = load_dataset(config.train, config.data)
    dev = load_dataset(config.dev, config.data) if config.dev else None
    labeled = isinstance(train, LabeledDataset)
    if dev is not None and labeled and isinstance(dev, LabeledDataset):
        dev, dropped = dev.with_label_set(train.label_set, unknown_labels=config.unknown_labels, where=str(config.dev))
        warn_dropped_labels(str(config.dev), dropped, "the training data")
    if fitted_settings and labeled:
        config = fit_settings_to_data(config, train, has_dev=dev is not None, settings=fitted_settings)
    training_options = dict(config.training)
    own_keys = {"output_dir", "show_progress_bar", "tune_thresholds", "decision_rule", "min_positives"}
    known = {field.name for field in dataclasses.fields(TrainingArguments)} - own_keys - {"threshold_objective"}
    unknown = sorted(set(training_options) - known)
    if unknown:
        raise ValueError(f"unknown training setting(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    sampler_options = {
        key: value
        for key, value in (("labels_per_batch", config.labels_per_batch), ("per_label", config.per_label))
        if value is not None
    }
    args = TrainingArguments(
        output_dir=config.out,
        num_epochs=config.epochs,
        max_steps=config.max_steps,
        batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        head_learning_rate=config.head_learning_rate,
        warmup_ratio=config.warmup_ratio,
        scheduler=config.scheduler,
        seed=config.seed,
        sampler=config.sampler,
        eval_steps=config.eval_steps,
        early_stopping_patience=config.early_stopping_patience,
        tune_thresholds=config.tune_thresholds,
        decision_rule=config.decision_rule,
        min_positives=config.min_positives,
        threshold_objective=config.objective,
        show_progress_bar=show_progress,
        **sampler_options,
        **training_options,
    )
    guide = None
    if {term.name for term in parse_loss_terms(config.loss)} & set(GUIDED_LOSSES):
        guide = LabelspaceModel.from_pretrained(config.guide_model, max_seq_length=config.max_seq_length)
    datasets, losses = build_losses(
        config.loss, train, seed=config.seed, loss_args=config.loss_args, pair_score=config.pair_score, guide=guide
    )
    head_kind = head_kind_for(config.loss) if labeled else None
    model = LabelspaceModel.from_pretrained(
        config.model,
        labels=train.label_set if head_kind else None,
        head_kind=head_kind or "multi_label",
        pooling=config.pooling,
        normalize=config.normalize,
        max_seq_length=None if max_seq_length_from_data else config.max_seq_length,
        seed=config.seed,
    )
    if max_seq_length_from_data:
        config = max_seq_length_for(model, train, config)
        if guide is not None:
            guide.encoder.max_seq_length = config.max_seq_length
    if head_kind == "single_label":
        model.set_decision_rule("top_k", top_k=1)  # one label per text: the argmax
    trainer = Trainer(model, datasets, losses, eval_dataset=dev, args=args)
    out = Path(config.out)
    if distributed.is_main_process():
        if clear_out:
            shutil.rmtree(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False), encoding="utf-8")
        sizes = ", ".join(f"{name}: {len(data)} {type(data).__name__}" for name, data in datasets.items())
        console.print(f"training {config.model} on {sizes}; loss {config.loss}; run folder {out}")
    try:
        output = trainer.train(resume_from_checkpoint=resume)
    except KeyboardInterrupt:
        raise RunInterrupted(out if out.is_dir() else None) from None
    summary: dict[str, Any] = {
        "run": str(out),
        "model": output.model_path,
        "steps": output.global_step,
        "training_loss": output.training_loss,
    }
    if not distributed.is_main_process():
        return summary
    if output.reports:  # labeled dev data and a head: the decisions, at 0.5 and as shipped (tuned)
        summary["dev"] = output.reports
        if print_table:
            console.print(metrics_table(output.reports, f"dev metrics ({config.dev})"))
    elif output.metrics:
        summary["dev"] = {"final": output.metrics}
    if output.selection is not None:  # the fine-tuned model against the frozen baseline, on dev
        summary["selection"] = output.selection
        console.print(f"shipped: {output.selection['shipped']} ({output.selection['reason']})")
    if output.scoring is not None:  # head, knn or hybrid, and why
        summary["scoring"] = output.scoring
        console.print(describe_scoring(output.scoring), soft_wrap=True, highlight=False)
    console.print(f"model saved to {output.model_path}")
    return summary


def training_texts(dataset: Any) -> list[str]:
    """Every text a training set feeds the encoder: labeled texts, both sides of pairs, triplet members."""
    if isinstance(dataset, LabeledDataset):
        return list(dataset.texts)
    if isinstance(dataset, PairDataset):
        return [*dataset.text1, *dataset.text2]
    negatives = [text for index in range(len(dataset)) for text in dataset.negatives_of(index)]
    return [*dataset.anchors, *dataset.positives, *negatives]


def max_seq_length_for(model: LabelspaceModel, train: Any, config: TrainConfig) -> TrainConfig:
    """``config`` with the max_seq_length that fits 95 % of ``train``'s texts (set on ``model`` too), printed."""
    limit = model.encoder.length_limit
    chosen = model.encoder.suggest_max_seq_length(training_texts(train), percentile=95, seed=config.seed)
    model.encoder.max_seq_length = chosen
    if distributed.is_main_process():
        console.print(
            f"max_seq_length {chosen} (95th percentile of train token counts; model limit {limit})", highlight=False
        )
    return config.updated(max_seq_length=chosen)


def fit_settings_to_data(
    config: TrainConfig, train: LabeledDataset, *, has_dev: bool, settings: Collection[str]
) -> TrainConfig:
    """``config`` with ``settings`` chosen by `fit_to_data` for ``train``'s size (printed)."""
    fitted = fit_to_data(len(train), len(train.label_set), batch_size=config.batch_size, has_dev=has_dev)
    chosen = {key: fitted[key] for key in DATA_SIZE_SETTINGS if key in settings}
    if distributed.is_main_process():
        values = ", ".join(f"{key} {value}" for key, value in chosen.items())
        console.print(f"fitted to {len(train)} texts, {len(train.label_set)} labels: {values}", highlight=False)
    return dataclasses.replace(config, **chosen)


def config_file_sets(path: Path, key: str) -> bool:
    """Whether the YAML settings file ``path`` (already read by `TrainConfig.from_yaml`) gives ``key``."""
    content = yaml.safe_load(read_text(path, expected="YAML settings")) or {}
    return key in {str(name).replace("-", "_") for name in content}


def head_loss_flags(config: TrainConfig, label_smoothing: float | None, pos_weight: str | None) -> dict[str, Any]:
    """``config.loss_args`` with ``--label-smoothing`` / ``--pos-weight`` applied to the spec's head loss."""
    loss_args = {name: dict(args) for name, args in config.loss_args.items()}
    names = [term.name for term in parse_loss_terms(config.loss)]
    if label_smoothing is not None:
        takers = [name for name in names if name in ("bce", "bce_balanced", "softmax")]
        if not takers:
            raise ValueError("--label-smoothing applies to the bce, bce_balanced or softmax loss; the spec has none")
        for name in takers:
            loss_args.setdefault(name, {})["label_smoothing"] = label_smoothing
    if pos_weight is not None:
        if "bce" not in names:
            raise ValueError("--pos-weight applies to the bce loss, which is not in the loss spec")
        text = pos_weight.strip().lower()
        if text in ("auto", "none"):
            value: Any = None if text == "none" else "auto"
        else:
            try:
                value = float(text)
            except ValueError:
                raise ValueError(f"--pos-weight: expected auto, none or a number, got {pos_weight!r}") from None
        loss_args.setdefault("bce", {})["pos_weight"] = value
    return loss_args


def align_labels(dataset: Any, label_set: Any) -> Any:
    """``dataset`` over ``label_set`` (the training labels, in their order); unknown labels are an error."""
    return dataset.with_label_set(label_set)[0]


def register(app: typer.Typer) -> None:
    """Add ``train`` to the app."""

    @app.command("train", epilog=TRAIN_EPILOG)
    def train_command(
        config_file: Annotated[
            Path | None, typer.Option("--config", help="YAML file of settings (flags override it).")
        ] = None,
        train: Annotated[str | None, typer.Option("--train", help="Training data file.")] = None,
        dev: Annotated[str | None, typer.Option("--dev", help="Dev data: evaluation and threshold tuning.")] = None,
        out: Annotated[str | None, typer.Option("--out", help="Run folder to write.")] = None,
        model: Annotated[
            str | None,
            typer.Option("--model", help=f"Encoder: 'minilm', a folder or a hub id (default {RECOMMENDED['model']})."),
        ] = None,
        loss: Annotated[
            str | None,
            typer.Option("--loss", help=f"Loss spec, e.g. multi_similarity+bce:0.5 (default {RECOMMENDED['loss']})."),
        ] = None,
        sampler: Annotated[
            str | None,
            typer.Option(
                "--sampler",
                help="random, no_duplicates, m_per_label, balanced, length_grouped or pk "
                f"(default {RECOMMENDED['sampler']}).",
            ),
        ] = None,
        epochs: Annotated[
            int | None, typer.Option("--epochs", help=f"Epochs (default {RECOMMENDED['epochs']}).")
        ] = None,
        max_steps: Annotated[int | None, typer.Option("--max-steps", help="Stop after this many steps.")] = None,
        batch_size: Annotated[
            int | None, typer.Option("--batch-size", help=f"Batch size (default {RECOMMENDED['batch_size']}).")
        ] = None,
        learning_rate: Annotated[
            float | None, typer.Option("--lr", help=f"Encoder learning rate (default {RECOMMENDED['learning_rate']}).")
        ] = None,
        head_learning_rate: Annotated[
            float | None,
            typer.Option("--head-lr", help=f"Head learning rate (default {RECOMMENDED['head_learning_rate']})."),
        ] = None,
        max_seq_length: Annotated[
            int | None,
            typer.Option(
                "--max-seq-length",
                help="Longest input in tokens (default: the 95th percentile of the train texts' token counts, "
                "rounded up to a multiple of 8, up to the model's limit).",
            ),
        ] = None,
        seed: Annotated[
            int | None, typer.Option("--seed", help=f"Random seed (default {RECOMMENDED['seed']}).")
        ] = None,
        eval_steps: Annotated[
            int | None, typer.Option("--eval-steps", help="Evaluate every N steps (default: each epoch).")
        ] = None,
        early_stopping: Annotated[
            int | None, typer.Option("--early-stopping", help="Stop after N evaluations without improvement.")
        ] = None,
        tune: Annotated[
            bool | None,
            typer.Option(
                "--tune-thresholds/--no-tune-thresholds", help="Tune per-label thresholds on dev (default: yes)."
            ),
        ] = None,
        resume: Annotated[bool, typer.Option("--resume", help="Continue from the newest checkpoint in --out.")] = False,
        overwrite: Annotated[
            bool, typer.Option("--overwrite", help="Replace what --out holds (an existing run, or other files).")
        ] = False,
        pair_score: Annotated[
            str | None,
            typer.Option(
                "--pair-score",
                help="How cosent/angle score pairs drawn from labeled data: binary (1 shares a label, 0 none) "
                "or jaccard.",
            ),
        ] = None,
        guide_model: Annotated[
            str | None, typer.Option("--guide-model", help="Guide model of the gist / cached_gist losses.")
        ] = None,
        pooling: Annotated[
            str | None,
            typer.Option("--pooling", help="mean, cls, max or last_token (default: the model's own, else mean)."),
        ] = None,
        normalize: Annotated[
            bool | None,
            typer.Option("--normalize/--no-normalize", help="L2-normalise embeddings (default: the model's own)."),
        ] = None,
        labels_per_batch: Annotated[
            int | None, typer.Option("--labels-per-batch", min=1, help="P of --sampler pk: labels per batch.")
        ] = None,
        per_label: Annotated[
            int | None, typer.Option("--per-label", min=1, help="K of --sampler pk: texts per label.")
        ] = None,
        label_smoothing: Annotated[
            float | None, typer.Option("--label-smoothing", help="Label smoothing of the bce / softmax head loss.")
        ] = None,
        pos_weight: Annotated[
            str | None,
            typer.Option(
                "--pos-weight", help="Positive weight of the bce loss: auto (from label counts), none, or a number."
            ),
        ] = None,
        unknown_labels: Annotated[
            str | None,
            typer.Option(
                "--unknown-labels", help="Dev labels the training data lacks: error (default) or ignore (drop, warn)."
            ),
        ] = None,
        objective: Annotated[
            str | None,
            typer.Option(
                "--objective",
                help="Dev metric the thresholds are tuned for: macro_f1 (default, per label), micro_f1, samples_f1 "
                "or samples_jaccard (jointly).",
            ),
        ] = None,
        head_init: Annotated[
            str | None,
            typer.Option(
                "--head-init",
                help="How the head starts: probe (logistic regression on the frozen embeddings) or random "
                f"(default {default_values()['head_init']}).",
            ),
        ] = None,
        baseline_candidate: Annotated[
            bool | None,
            typer.Option(
                "--baseline-candidate/--no-baseline-candidate",
                help="Ship the frozen baseline (encoder as loaded + linear probe) when it beats the fine-tuned "
                "model on dev (default: yes).",
            ),
        ] = None,
        scoring: Annotated[
            str | None,
            typer.Option(
                "--scoring",
                help="How the saved model scores labels: auto (build a kNN index of the training data and pick "
                "head, knn or hybrid by dev macro-F1; head without dev data), head (no index), knn or hybrid "
                f"(head weight tuned on dev) (default {default_values()['scoring']}).",
            ),
        ] = None,
        text_column: Annotated[str | None, typer.Option("--text-column", help="Column holding the text.")] = None,
        labels_column: Annotated[str | None, typer.Option("--labels-column", help="Column holding the labels.")] = None,
        labels_file: Annotated[
            Path | None, typer.Option("--labels-file", help="Label names, one a line (for integer ids).")
        ] = None,
        labels_format: Annotated[
            str | None,
            typer.Option("--labels-format", help="names, ids, multi_hot (a 0/1 list per text) or auto (default)."),
        ] = None,
        quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
    ) -> None:
        """Fine-tune a model on labeled, pair or triplet data; tune per-label thresholds on dev; save the run."""
        config = TrainConfig.from_yaml(config_file) if config_file is not None else TrainConfig()
        data_options = dict(config.data)
        for key, value in (("text_column", text_column), ("labels_column", labels_column)):
            if value is not None:
                data_options[key] = value
        if labels_file is not None:
            data_options["labels_file"] = str(labels_file)
        if labels_format is not None:
            data_options["labels_format"] = labels_format
        config = config.updated(
            train=train,
            dev=dev,
            out=out,
            model=model,
            loss=loss,
            sampler=sampler,
            epochs=epochs,
            max_steps=max_steps,
            batch_size=batch_size,
            learning_rate=learning_rate,
            head_learning_rate=head_learning_rate,
            max_seq_length=max_seq_length,
            seed=seed,
            eval_steps=eval_steps,
            early_stopping_patience=early_stopping,
            tune_thresholds=tune,
            data=data_options,
            pair_score=pair_score,
            guide_model=guide_model,
            pooling=pooling,
            normalize=normalize,
            labels_per_batch=labels_per_batch,
            per_label=per_label,
            unknown_labels=unknown_labels,
            objective=objective,
        )
        config = config.updated(loss_args=head_loss_flags(config, label_smoothing, pos_weight))
        if baseline_candidate is None and "baseline_candidate" not in config.training:
            baseline_candidate = True  # on for `labelspace train` (the library default is off, like threshold tuning)
        if scoring is not None and scoring not in SCORING_CHOICES:
            raise ValueError(f"--scoring: expected one of {', '.join(SCORING_CHOICES)}; got {scoring!r}")
        training_flags = {"head_init": head_init, "baseline_candidate": baseline_candidate, "scoring": scoring}
        config = config.updated(
            training={**config.training, **{key: value for key, value in training_flags.items() if value is not None}}
        )
        in_file = config_file is not None and config_file_sets(config_file, "max_seq_length")
        from_data = max_seq_length is None and not in_file  # neither flag nor config file: from the data
        flag_values = {
            "epochs": epochs,
            "learning_rate": learning_rate,
            "head_learning_rate": head_learning_rate,
            "early_stopping_patience": early_stopping,
        }
        fitted = [
            key
            for key in DATA_SIZE_SETTINGS
            if flag_values.get(key) is None and (config_file is None or not config_file_sets(config_file, key))
        ]
        run_training(
            config,
            resume=resume,
            overwrite=overwrite,
            show_progress=not quiet,
            max_seq_length_from_data=from_data,
            fitted_settings=fitted,
        )
