"""Density-matching policy search (Fast AutoAugment, Lim et al. 2019): the search's side.

Once per study, K fold models are trained, each on K-1 folds of the search subset with the
space's `fold_recipe` (the child recipe with the baseline augmentation: crop, flip, Cutout 16),
and saved under STUDIES_DIR/STUDY/folds/fold-F through `save_run`. The study records where they
are and how they were made (user attribute "density": folds, draws, recipe, sizes, seed, data
fingerprint, seconds, held-out accuracies); a re-run reuses them when its options match, refuses
with one line when they do not, and stops with one line (exit 2) when a fold-model file is
missing or belongs to something else. Their training time is part of the search's cost: it is
printed, and recorded.

A trial is scored by inference only (`score_trial`): each fold model classifies its own held-out
fold augmented by the trial's policy alone (`scoring_augment`: no crop, flip or Cutout around it);
accuracy is the objective, the loss is recorded too. The held-out images are scored in
`max_epochs` slices, each slice one report (`training_iteration` = slice, `val_accuracy` =
accuracy over the slices so far), so ASHA can stop a weak policy after its first slice and the
study keeps an intermediate value per slice, as for a trained trial. The last report carries
`finished`. Every trial of a study draws its random numbers from one generator seed (the study's
seed): common random numbers, so that two policies differ in score by what they do, not by the
luck of their draws. Fold models and held-out folds are loaded once per Ray worker process and
kept (Tune reuses its actors), not once per trial.

The degenerate optimum. Scored plainly, the best policy is one that does nothing: the fold models
were trained on the baseline augmentation alone, so any extra change can only move images away
from what they know, and TPE would drive every probability to 0. Fast AutoAugment's remedy is
kept: each held-out image is augmented `draws` times (their `eval_tta`) and counts as correct when
any draw is classified correctly, its loss the smallest over the draws. That remedy only works on
the policy alone: scored inside the baseline augmentation (as a first version here did), a policy
that does nothing still gets varied draws from the random crop, flip and Cutout, earns the same
"any draw" bonus as a useful policy, and ranked first in a 17-trial run. On the policy alone a
policy that does nothing gives the same image every draw and scores exactly the fold models'
plain held-out accuracy (it ranked last of 68 COMPLETE trials of a 200-trial run; both runs in
bench/RESULTS.md); a policy whose draws are varied but still recognisable
earns the bonus; one that destroys images loses. So the score rewards what augmentation is for,
diversity that stays in the data's density, rather than closeness alone. Two further guards: the
export drops sub-policies whose steps never apply, and merging the best trials' sub-policies (as
Fast AutoAugment merged the top policies of every fold) spreads the export over many policies
rather than one. Draws cost inference time linearly; `--draws` trades it (1 = plain density
matching, where doing nothing wins).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from training import LabeledImages, TrainConfig

from ._errors import UsageError
from ._job import FoldOptions, StudySettings, conflict
from ._resume import space_params
from ._space import Space
from ._study import density_record, write_density_record

# How trials are scored, recorded with the fold models: a study scored another way (before
# 2026-11-28's change, the policy inside the baseline augmentation, one seed per trial) holds
# values that cannot be compared with new ones, so it is not continued.
SCORING = "policy alone, common random numbers"
FOLDS_DIR = "folds"
# The record's keys that must match for a re-run to reuse the fold models (and their option).
_MATCH = (
    ("folds", "--folds"),
    ("draws", "--draws"),
    ("fold_epochs", "--fold-epochs"),
    ("recipe", "--model"),
    ("seed", "--seed"),
    ("train_size", "--train-size"),
    ("fingerprint", "--data"),
)


def prepare_folds(
    study: Any,
    options: FoldOptions | None,
    *,
    space: Space,
    settings: StudySettings,
    train_set: LabeledImages,
    output_dir: Path,
) -> dict[str, Any] | None:
    """The study's fold-model record for a density space (`options` set), training the fold
    models first when the study has none; None for a space scored by training. A record that
    does not fit raises UsageError, before any trial runs."""
    if options is None:
        return None
    name = study.study_name
    recipe = _fold_recipe(space, settings, options)
    wanted = {
        "scoring": SCORING,
        "folds": options.folds,
        "draws": options.draws,
        "fold_epochs": options.fold_epochs,
        "recipe": recipe.to_dict(),
        "seed": settings.seed,
        "train_size": len(train_set),
        "fingerprint": train_set.fingerprint(),
    }
    folder = Path(output_dir) / FOLDS_DIR
    recorded = density_record(study)
    if recorded:
        return _reuse_folds(name, folder, recorded, wanted)
    if any(t.state.is_finished() for t in study.get_trials(deepcopy=False)):
        raise UsageError(
            f"study {name!r} holds trials but no fold models: it was scored by "
            "training a child per trial; continue it with --space policy_child, or pass --study "
            "NEW_NAME for a density-matching search"
        )
    record = {**wanted, **_train_folds(folder, recipe, train_set, options.folds, settings.seed)}
    write_density_record(study, record)
    return record


def _fold_recipe(space: Space, settings: StudySettings, options: FoldOptions) -> Any:
    """The study's child (else the space's fold recipe) with its model, seed and precision."""
    recipe = TrainConfig.from_dict(settings.child) if settings.child else space.fold_recipe()
    if settings.model and settings.model != recipe.model:
        recipe = recipe.replace(model=settings.model, model_kwargs={})
    return recipe.replace(
        epochs=options.fold_epochs, seed=settings.seed, precision=settings.precision
    )


def _reuse_folds(
    name: str, folder: Path, recorded: dict[str, Any], wanted: dict[str, Any]
) -> dict[str, Any]:
    """The recorded fold models, checked to fit what this run asks and to be on disk."""
    if recorded.get("scoring") != SCORING:
        raise UsageError(
            f"study {name!r} was scored by an earlier version of the density search "
            "(the policy inside crop, flip and Cutout), whose values new trials cannot be compared "
            "with; pass --study NEW_NAME for a new study"
        )
    _check_matches(name, recorded, wanted)
    _check_files(name, folder, recorded)
    accuracies = ", ".join(f"{100 * a:.1f}%" for a in recorded["held_out_accuracy"])
    print(
        f"reusing {recorded['folds']} fold models in {folder} (trained in "
        f"{recorded['seconds']:.0f} s; held-out accuracy {accuracies})",
        flush=True,
    )
    return {**recorded, "dir": str(folder)}


def _check_matches(study_name: str, recorded: dict[str, Any], wanted: dict[str, Any]) -> None:
    for key, option in _MATCH:
        if recorded.get(key) != wanted[key]:
            was, now = recorded.get(key), wanted[key]
            if key == "recipe":
                was, now = (was or {}).get("model"), now["model"]
            elif key == "fingerprint":
                was, now = "other images", "these"
            raise conflict(f"study {study_name!r}'s fold models were made", option, was, now)


def fold_folder(folder: Path, fold: int) -> Path:
    """Where fold model `fold` (0-based) of a study lives."""
    return folder / f"fold-{fold}"


def _check_files(study_name: str, folder: Path, record: dict[str, Any]) -> None:
    """Every fold model of `record` is in `folder`, saved for this study's fold: else one line."""
    import torch

    from ._artifacts import ArtifactError, load_model

    for fold in range(record["folds"]):
        where = fold_folder(folder, fold)
        missing = [name for name in ("weights.pt", "config.json") if not (where / name).is_file()]
        if missing:
            raise UsageError(
                f"fold model file {where / missing[0]} is missing; expected the {record['folds']} "
                f"fold models study {study_name!r} saved in {folder}: pass --study NEW_NAME to "
                "train new ones"
            )
        try:
            extra = json.loads((where / "config.json").read_text())
            load_model(where, torch.device("cpu"))
        except (OSError, ValueError, ArtifactError) as exc:
            raise UsageError(
                f"fold model {fold} of study {study_name!r} cannot be used ({_first_line(exc)}); "
                f"expected the weights.pt and config.json the study saved in {where}: pass "
                "--study NEW_NAME to train new fold models"
            ) from None
        expected = {"fold": fold, "folds": record["folds"], "fingerprint": record["fingerprint"]}
        if any(extra.get(key) != value for key, value in expected.items()):
            raise UsageError(
                f"{where} holds a foreign model (fold {extra.get('fold')!r} of "
                f"{extra.get('folds')!r}, data {extra.get('fingerprint')!r}); expected fold "
                f"{fold} of {record['folds']} of study {study_name!r}: pass --study NEW_NAME "
                "to train new fold models"
            )


def _first_line(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__


def _train_folds(
    folder: Path, recipe: Any, train_set: LabeledImages, k: int, seed: int
) -> dict[str, Any]:
    """Train and save the K fold models; what the record adds (sizes, accuracies, seconds)."""
    from training import NonFiniteLossError, OutputError, evaluate, fold_splits, train

    from ._artifacts import save_run

    start = time.perf_counter()
    accuracies, sizes = [], []
    print(
        f"training {k} fold models ({recipe.model}, {recipe.epochs} epochs, "
        f"{len(train_set)} search images) into {folder}",
        flush=True,
    )
    for fold, (kept, held) in enumerate(fold_splits(train_set.labels, k, seed)):
        fold_start = time.perf_counter()
        config = recipe.replace(seed=seed + fold)  # distinct initialisations across folds
        try:
            result = train(config, train_set.subset(kept))
            held_out = evaluate(result.model, train_set.subset(held), precision=result.precision)
            save_run(
                fold_folder(folder, fold),
                result.model,
                config,
                precision=result.precision,
                fold=fold,
                folds=k,
                fingerprint=train_set.fingerprint(),
            )
        except OutputError as exc:
            raise UsageError(f"{exc}; free space there and run the same command again", 1) from None
        except NonFiniteLossError as exc:
            raise UsageError(
                f"fold model {fold} did not train ({exc}); expected a recipe that trains", 1
            ) from None
        finally:
            result = None  # the model on the GPU goes before the next fold trains
            release_gpu()
        accuracies.append(round(held_out.accuracy, 6))
        sizes.append(len(held))
        print(
            f"fold {fold + 1}/{k}: trained on {len(kept)} images in "
            f"{time.perf_counter() - fold_start:.1f} s, held-out accuracy "
            f"{100 * held_out.accuracy:.2f}% ({len(held)} images)",
            flush=True,
        )
    seconds = round(time.perf_counter() - start, 1)
    print(f"fold models: {seconds:.1f} s in all (part of the search's cost)", flush=True)
    return {
        "dir": str(folder),
        "held_out_sizes": sizes,
        "held_out_accuracy": accuracies,
        "seconds": seconds,
        "trained": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def release_gpu() -> None:
    """Give the driver's cached GPU memory back to the GPU: the fold models train in the driver,
    and the trials that share the GPU after them need that memory."""
    import gc

    import torch

    if torch.cuda.is_initialized():
        gc.collect()  # the fold's model and optimizer, held in reference cycles
        torch.cuda.empty_cache()


# Per Ray worker process: (fold folder, record fingerprint, device) -> (models, held-out folds).
_LOADED: dict[tuple[str, str, str], tuple[list, list]] = {}


def _fold_models(record: dict[str, Any], train_set: Any, device: Any) -> tuple[list, list]:
    """The study's fold models and their held-out folds on `device`, loaded once per process."""
    key = (record["dir"], record["fingerprint"], str(device))
    if key not in _LOADED:
        from training import fold_splits

        from ._artifacts import load_model

        folder = Path(record["dir"])
        models = [load_model(fold_folder(folder, f), device)[0] for f in range(record["folds"])]
        splits = fold_splits(train_set.labels, record["folds"], record["seed"])
        held = [train_set.subset(held).to(device) for _, held in splits]
        _LOADED.clear()  # one study per worker at a time: keep memory to one set of models
        _LOADED[key] = (models, held)
    return _LOADED[key]


def scoring_augment(trial_config: Any) -> Any:
    """The augmentation a density trial is scored with: `trial_config`'s policy alone.

    Without the crop, flip, rotation and Cutout the policy is trained inside, a policy that does
    nothing returns every image unchanged on every draw (see the module docstring)."""
    from training import config_augment

    return config_augment(trial_config.replace(crop_padding=0, flip=False, rotation=0.0, cutout=0))


def score_trial(config: dict[str, Any], *, settings: Any, train_set: Any, val_set: Any) -> None:
    """Score one policy by density matching; ASHA may stop it after any slice.

    The trial function Ray runs for a density space (`trial_function`); `val_set` is unused
    (the fold models' held-out folds are the scoring data) but kept so that both trial
    functions take the same arguments. An error is its last report, as in `run_trial`. It saves
    no checkpoint: inference only, a retry scores it again.
    """
    from ._trainable import report_errors

    report_errors(_score_trial, config, settings, train_set)


def _score_trial(config: dict[str, Any], settings: Any, train_set: Any) -> None:
    import torch
    from ray import tune

    from training import density_scores

    from ._space import get_space
    from ._trainable import trial_device

    start = time.perf_counter()
    number = int(config["trial_number"])
    params = space_params(config)
    record = settings.folds
    trial_config = get_space(settings.space).trial_config(
        params, model=settings.model, precision=settings.precision, child=settings.child
    )
    device, device_name = trial_device(settings)
    models, held = _fold_models(record, train_set, device)
    # One seed for every trial (common random numbers; see the module docstring).
    generator = torch.Generator(device=device).manual_seed(settings.seed)
    scores = density_scores(
        models,
        held,
        scoring_augment(trial_config),
        slices=settings.max_epochs,
        draws=record["draws"],
        generator=generator,
        device=device,
        # The study's precision, which the fold models trained with: on the device they trained
        # on, "auto" becomes what it was for them.
        precision=trial_config.precision,
    )
    for step, metrics in enumerate(_running_scores(scores, number, start), 1):
        if step < settings.max_epochs:
            tune.report(metrics)
    tune.report(
        {
            **metrics,
            "wall_time": round(time.perf_counter() - start, 3),
            "device": device_name,
            "finished": True,
        }
    )


def _running_scores(scores: Any, number: int, start: float) -> Any:
    """Per slice scored, the trial's report: accuracy and loss over the slices so far."""
    count = correct = 0
    loss_sum = 0.0
    for step, score in enumerate(scores, 1):
        count, correct = count + score.count, correct + score.correct
        loss_sum += score.loss_sum
        yield {
            "epoch": step,  # the slice: the searcher's and ASHA's step
            "val_accuracy": correct / max(count, 1),
            "val_loss": loss_sum / max(count, 1),
            "slice_accuracy": score.correct / max(score.count, 1),
            "images_scored": count,
            "trial_number": number,
            "trial_time": round(time.perf_counter() - start, 3),
        }


def trial_function(settings: Any) -> Any:
    """The function Ray runs per trial: `score_trial` when `settings` carry fold models, else
    `run_trial` (a trained trial)."""
    from ._trainable import run_trial

    return score_trial if settings.folds else run_trial
