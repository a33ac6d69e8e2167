"""The ``nnx`` command: ``info``, ``train``, ``predict``, ``evaluate``, ``parity`` and ``export``.

``nnx parity`` trains copies of a model on two or more backends and reports
where they first part ways; exit status 0 when every model agrees on every
backend, 1 when one does not, 2 for bad arguments or a backend that cannot run
here (with the reason). ``nnx parity --record TRACE`` writes a trace of one
backend's run instead, and ``--against TRACE`` replays one on the local
backends (:mod:`nnx.testing.trace`), with the same report and exit statuses.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.util
import json
import math
import os
import platform
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import nnx
from nnx import backend, datasets, recipes
from nnx import random as _random
from nnx.errors import NnxError, OutputPathError, UnknownBackendError
from nnx.testing.compare import per_step
from nnx.testing.examples import EXAMPLES, ParityCase, case_for_model, example
from nnx.testing.parity import check_parity
from nnx.train.options import DEFAULT_STEPS, default_epochs


def _info(args: argparse.Namespace) -> int:
    print(f"nnx {nnx.__version__} (Python {platform.python_version()}, {platform.machine()})")
    try:
        selected, status = backend.current(), 0
    except UnknownBackendError as exc:
        source = f" (from ${backend.ENV_VAR})" if os.environ.get(backend.ENV_VAR) else ""
        selected, status = f"none: {exc}{source}", 1
    print(f"selected backend: {selected}")
    print("backends:")
    for name, reason in backend.available(refresh=True).items():
        record = backend.BACKENDS[name]
        state = "available" if reason is None else f"unavailable: {reason}"
        print(f"  {name:<17} {state}")
        print(f"  {'':<17} ({record.description})")
    return status


class _UsageError(Exception):
    """A bad argument found after parsing: exit code 2, like argparse's own errors."""


def _positive(kind: type) -> Any:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {kind.__name__}, got {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value

    parse.__name__ = f"positive {kind.__name__}"
    return parse


def _tolerance_value(text: str) -> float:
    """A relative tolerance: a finite number >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must be a fraction between 0 and 1, got {text}")
    return value


def _load_data(spec: str, label_column: int | str, header: bool | None) -> Any:
    """A bundled name, a folder or file of MNIST IDX data, or a CSV file, with raw (unscaled) inputs:
    the model's first layer standardises them."""
    if spec in datasets.BUNDLED or spec in datasets.ALIASES:
        return datasets.load(spec, scale=False)
    path = Path(spec)
    if not path.exists():
        raise _UsageError(
            f"DATASET {spec!r} is neither a bundled data set ({', '.join(datasets.names())}) "
            f"nor an existing path to MNIST IDX or CSV files"
        )
    if path.is_file() and path.name.lower().endswith((".csv", ".csv.gz")):
        return datasets.load_csv(path, label_column=label_column, header=header)
    return datasets.load_mnist_idx(*datasets.find_idx_pair(path), scale=False)


def _auto_epochs(samples: int, batch_size: int) -> int:
    """Epochs when ``--epochs`` is not given: about 3,000 steps, at least 20 and at most 200 epochs."""
    return default_epochs(samples, batch_size, DEFAULT_STEPS["classification"])


def _input_names(ds: Any) -> list[str] | None:
    """The CSV header's names of the input columns (``None`` without a header or with repeated names)."""
    columns, label = ds.columns, ds.label_name
    if not columns or len(set(columns)) != len(columns) or label not in columns:
        return None
    return [c for c in columns if c != label]


def _column(text: str) -> int | str:
    """A ``--label-column`` value: an integer index, else a column name."""
    try:
        return int(text)
    except ValueError:
        return text


def _writable_target(option: str, value: str | None, inputs: list[Any] = (), outputs: list[Any] = ()) -> None:
    """Refuse, before any work, an output the command may not write (:func:`nnx.io.check_output`): one of
    its ``inputs`` or other ``outputs``, a directory, device or FIFO, or a path in a missing or read-only folder."""
    if value is None:
        return
    try:
        nnx.io.check_output(value, inputs=inputs, outputs=[o for o in outputs if o is not None], what=option)
    except OutputPathError as exc:
        raise _UsageError(str(exc)) from None


def _data_files(spec: str) -> list[Path]:
    """The files a DATASET argument reads (none for a bundled name)."""
    path = Path(spec)
    if spec in datasets.BUNDLED or spec in datasets.ALIASES or not path.exists():
        return []
    if path.is_file() and path.name.lower().endswith((".csv", ".csv.gz")):
        return [path]
    try:
        return list(datasets.find_idx_pair(path))
    except OSError:
        return [path]


def _train_outputs(args: argparse.Namespace) -> None:
    """Check every output of ``nnx train`` before any work: the checkpoint directory (held for the
    whole command, :func:`nnx.checkpoint.claim_directory`), ``--save`` and ``--plot``."""
    inputs = _data_files(args.dataset)
    ck = str(nnx.checkpoint.checkpoint_path(args.checkpoint)) if args.checkpoint else None
    lock = str(Path(args.checkpoint) / nnx.checkpoint.LOCK_NAME) if args.checkpoint else None
    _writable_target("--save", args.save, inputs, [args.plot, ck, lock])
    _writable_target("--plot", args.plot, inputs, [args.save, ck, lock])
    if args.checkpoint:
        for data in inputs:
            for name in (ck, lock):
                if nnx.io.same_file(Path(name), data):
                    raise _UsageError(f"--checkpoint {args.checkpoint!r} would overwrite the data file {str(data)!r}")


def _train(args: argparse.Namespace) -> int:
    with contextlib.ExitStack() as held:
        return _train_in(args, held)


def _train_in(args: argparse.Namespace, held: contextlib.ExitStack) -> int:
    if args.resume and not args.checkpoint:
        raise _UsageError("--resume needs --checkpoint DIR, the directory to resume from")
    if args.checkpoint and Path(args.checkpoint).exists() and not Path(args.checkpoint).is_dir():
        raise _UsageError(f"--checkpoint {args.checkpoint!r} is a file; it names the directory that holds "
                          f"the run's checkpoint ({nnx.checkpoint.CHECKPOINT_NAME} inside it)")
    _train_outputs(args)
    if args.plot and importlib.util.find_spec("matplotlib") is None:
        print("nnx: error: --plot needs matplotlib: pip install matplotlib "
              "(or the extra: pip install '.[plot]' in nnx's clone)", file=sys.stderr)
        return 1
    try:
        name = args.backend or backend.current()
        nnx.use(name)
    except UnknownBackendError as exc:
        raise _UsageError(str(exc)) from None
    world = nnx.distributed.init() if args.distributed else None  # before the model: it picks the GPU
    lead = world is None or world.rank == 0
    if args.checkpoint and lead:  # a second run on the directory is refused now, not after an epoch
        try:
            held.enter_context(nnx.checkpoint.claim_directory(args.checkpoint))
        except OutputPathError as exc:
            raise _UsageError(f"--checkpoint: {exc}") from None
    say = print if lead else _quiet
    if args.task == "regression":
        return _train_regression(args, name, world, say)
    ds = _load_data(args.dataset, _column(args.label_column), args.header)
    _note_continuous_labels(ds, say)
    labels = list(ds.labels) if ds.labels is not None else list(range(max(int(ds.y.max()) + 1, 2)))
    classes = len(labels)

    def enough(y: Any) -> None:
        if len(y) < 4 or classes < 2:
            raise _UsageError(f"{args.dataset} has {len(y)} samples of {classes} classes; training needs at "
                              f"least 4 samples and 2 classes")

    saved_run, run_config, (xt, yt), (xv, yv) = _split_data(args, ds.x.astype("float64"), ds.y, True, enough)
    run_config = {"data": ds.name, **run_config}
    inputs = int(xt.shape[1])
    f = {"dtype": args.dtype, "backend": name}
    # images: one scale for all pixels (a per-pixel scale blows up the rarely inked border pixels)
    scale = nnx.preprocessing.Standardize(inputs, names=_input_names(ds), **f).fit(xt, per_feature=args.model != "cnn")
    head = nnx.preprocessing.ClassLabels(labels, name=ds.label_name)
    if args.model == "cnn":
        shape = _image_shape(ds, inputs)
        body, summary = recipes.lenet(shape, classes, args.seed, args.dtype, name)
        model = nnx.Sequential(scale, nnx.Reshape((1, *shape)), *body, head)
    else:
        body, summary = recipes.mlp([inputs, args.hidden, classes], [args.seed, args.seed + 1], **f)
        model = nnx.Sequential(scale, *body, head)
    epochs = args.epochs if args.epochs is not None else _auto_epochs(len(yt), args.batch_size)
    loss, optimizer, train_targets, val_targets = _recipe(model, args, yt, yv, classes)
    say(f"nnx train {ds.name}: {len(yt)} training and {len(yv)} held-out samples (stratified), {inputs} inputs, "
        f"{classes} classes; backend {name} ({args.dtype})")
    ranks = f" per process, {world.size} processes" if world is not None else ""
    say(f"model: standardise -> {summary}, softmax cross-entropy, Adam lr {optimizer.lr:g}, "
        f"batch size {args.batch_size}{ranks}, {epochs} epochs, seed {args.seed}")
    if saved_run is not None:
        done = saved_run.epoch
        say(f"resuming from {nnx.checkpoint.checkpoint_path(args.checkpoint)} after epoch {done}")
    run = _fit(args, model, loss, optimizer, (xt, train_targets), (xv, val_targets), epochs, "accuracy",
               run_config, world)
    if run is None:
        return 0
    scores = nnx.evaluate(model, loss, (xv, val_targets), metrics="accuracy")
    right = round(scores["accuracy"] * len(yv))
    print(f"held-out accuracy: {100 * scores['accuracy']:.2f}% ({right}/{len(yv)}), "
          f"loss {scores['loss']:.4f}; trained in {run[1]:.1f} s")
    return _write_outputs(args, run[0], model, f"nnx train {ds.name} ({name})")


def _split_data(args: argparse.Namespace, x: Any, y: Any, stratify: bool,
                enough: Any) -> tuple[Any, dict[str, Any], tuple[Any, Any], tuple[Any, Any]]:
    """The checkpointed run when resuming, the split settings (``run_config``'s), and the training and
    held-out parts, split as the checkpointed run split them (see :func:`_split_settings`);
    ``enough(y)`` refuses too little data once ``--limit`` has cut it."""
    resumed = nnx.checkpoint.latest_checkpoint(args.checkpoint) if args.resume else None
    saved_run = nnx.load_checkpoint(resumed) if resumed else None
    split_seed, val, limit = _split_settings(args, saved_run)
    if limit is not None and limit < len(y):
        keep = _random.permutation(_random.make_rng(split_seed), len(y))[:limit]
        x, y = x[keep], y[keep]
    enough(y)
    try:
        train, held_out = datasets.train_val_split(x, y, val=val, seed=split_seed, stratify=stratify)
    except nnx.errors.ConfigError as exc:
        raise _UsageError(f"--val {val} with {len(y)} samples: {exc}") from None
    return saved_run, {"split_seed": split_seed, "val": val, "limit": limit}, train, held_out


def _fit(args: argparse.Namespace, model: Any, loss: Any, optimizer: Any, train: Any, held_out: Any, epochs: int,
         metrics: Any, run_config: dict[str, Any], world: Any) -> tuple[Any, float] | None:
    """``nnx.fit`` as the command runs it (its warnings printed as notes); ``(history, seconds)``, or
    ``None`` on ranks other than 0, which print nothing."""
    lead = world is None or world.rank == 0
    started = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = nnx.fit(model, loss, optimizer, train, epochs=epochs, batch_size=args.batch_size,
                          validation=held_out, seed=args.seed, progress=False if args.quiet or not lead else None,
                          metrics=metrics, checkpoint=args.checkpoint, resume=args.resume,
                          allow_changes=args.allow_changes, run_config=run_config, world=world,
                          precision=args.precision)
    if not lead:
        return None
    for warning in caught:
        print(f"nnx: note: {warning.message}", file=sys.stderr)
    return history, time.perf_counter() - started


def _write_outputs(args: argparse.Namespace, history: Any, model: Any, title: str) -> int:
    """``--plot`` and ``--save`` after training."""
    if args.plot:
        print(f"wrote the training plot to {nnx.plot_history(history, args.plot, title=title)}")
    if args.save:
        print(f"saved the model to {nnx.save(model, args.save)}")
    return 0


# regression ---------------------------------------------------------------------------


def _note_continuous_labels(ds: Any, say: Any) -> None:
    """Warn a classification run whose numeric labels look like a continuous target (``looks_continuous``)."""
    labels = ds.labels or []
    if labels and all(isinstance(v, int) for v in labels) and datasets.looks_continuous(
            [labels[i] for i in ds.y.tolist()]):
        say(f"nnx: note: the labels are {len(labels)} distinct numbers for {len(ds)} samples: that looks like a "
            f"continuous target, not classes; to predict the number, train a regression: "
            f"nnx train {ds.source or ds.name} --task regression", file=sys.stderr)


def _train_regression(args: argparse.Namespace, name: str, world: Any, say: Any) -> int:
    """``nnx train FILE.csv --task regression``: a one-hidden-layer ReLU network on standardised inputs,
    trained with MSE on the standardised target; the model ends in Destandardize, so it answers (and
    is saved) in the target's units. Held-out RMSE, MAE and R^2 in those units."""
    path = Path(args.dataset)
    if not (path.is_file() and path.name.lower().endswith((".csv", ".csv.gz"))):
        raise _UsageError(f"--task regression needs a CSV file with the target in a column; {args.dataset!r} "
                          f"is not one")
    if args.model != "mlp":
        raise _UsageError("--task regression trains an mlp; --model cnn classifies images")
    ds = datasets.load_csv(path, label_column=_column(args.label_column), header=args.header, target="values")

    def enough(y: Any) -> None:
        if len(y) < 4:
            raise _UsageError(f"{args.dataset} has {len(y)} samples; training needs at least 4")

    saved_run, run_config, (xt, yt), (xv, yv) = _split_data(args, ds.x.astype("float64"), ds.y.reshape(-1, 1),
                                                            False, enough)
    run_config = {"data": ds.name, **run_config, "task": "regression"}
    inputs = int(xt.shape[1])
    f = {"dtype": args.dtype, "backend": name}
    scale = nnx.preprocessing.Standardize(inputs, names=_input_names(ds), **f).fit(xt)
    out = nnx.preprocessing.Destandardize(1, names=None if ds.label_name is None else [ds.label_name], **f).fit(yt)
    body, summary = recipes.mlp([inputs, args.hidden, 1], [args.seed, args.seed + 1], **f)
    network = nnx.Sequential(scale, *body)
    optimizer = nnx.Adam(network.parameters(), lr=args.lr)
    epochs = args.epochs
    if epochs is None:
        epochs = default_epochs(len(yt), args.batch_size, DEFAULT_STEPS["regression"])
    target = f"target {ds.label_name!r}" if ds.label_name else "one target"
    say(f"nnx train {ds.name}: {len(yt)} training and {len(yv)} held-out samples, {inputs} inputs, {target} "
        f"(regression); backend {name} ({args.dtype})")
    ranks = f" per process, {world.size} processes" if world is not None else ""
    say(f"model: standardise -> {summary} -> destandardise, MSE on the standardised "
        f"target, Adam lr {args.lr:g}, batch size {args.batch_size}{ranks}, {epochs} epochs, seed {args.seed}")
    if saved_run is not None:
        say(f"resuming from {nnx.checkpoint.checkpoint_path(args.checkpoint)} after epoch {saved_run.epoch}")
    run = _fit(args, network, nnx.MSE(), optimizer, (xt, out.standardize(yt)), (xv, out.standardize(yv)), epochs,
               {}, run_config, world)
    if run is None:
        return 0
    model = nnx.Sequential(*network, out)
    scores = nnx.metrics.regression_scores(yv, nnx.predict(model, xv))
    print(f"held-out RMSE {scores['rmse']:.4g}, MAE {scores['mae']:.4g}, R^2 {scores['r2']:.4f} "
          f"({len(yv)} samples); trained in {run[1]:.1f} s")
    return _write_outputs(args, run[0], model, f"nnx train {ds.name} ({name})")


def _regression_output(model: Any) -> Any:
    """The model's last Destandardize (a regression model's), or ``None``."""
    return next((m for _, m in reversed(list(model.named_modules()))
                 if isinstance(m, nnx.preprocessing.Destandardize)), None)


def _predict_regression(args: argparse.Namespace, model: Any, x: Any) -> int:
    """``nnx predict`` of a regression model: one line per row, the predicted value(s) in the target's units."""
    if args.proba:
        raise _UsageError(f"--proba is for classifiers; {args.model_file} is a regression model (it predicts values)")
    out = _regression_output(model)
    values = nnx.to_host(nnx.predict(model, x)).reshape(len(x), -1)
    width = values.shape[1]
    names = out.names or (["prediction"] if width == 1 else [f"prediction{j}" for j in range(width)])
    lines = [",".join(_csv_cell(n) for n in names)]
    lines += [",".join(f"{v:.8g}" for v in row) for row in values.tolist()]
    return _write_predictions(args, lines)


def _evaluate_regression(args: argparse.Namespace, model: Any, x: Any, label_cells: list[str]) -> int:
    """``nnx evaluate`` of a regression model: RMSE, MAE and R^2 against the file's target column."""
    truth = []
    for row, cell in enumerate(label_cells):
        try:
            value = float(cell)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise nnx.errors.DataFormatError(f"{args.data}: data row {row + 1}: the target {cell!r} is not a "
                                             f"finite number")
        truth.append(value)
    scores = nnx.metrics.regression_scores(truth, nnx.predict(model, x))
    print(f"nnx evaluate {args.model_file} on {args.data}: {len(truth)} samples (regression)")
    print(f"RMSE {scores['rmse']:.6g}\nMAE  {scores['mae']:.6g}\nR^2  {scores['r2']:.6f}")
    return 0


def _quiet(*args: Any, **kwargs: Any) -> None:
    """What ranks other than 0 print: nothing."""


def _split_settings(args: argparse.Namespace, ck: Any) -> tuple[int, float, int | None]:
    """The seed, held-out fraction and sample limit that split the data: ``--seed``, ``--val`` and
    ``--limit``, except when resuming (from the checkpoint ``ck``) with ``--allow-changes``: then the
    checkpointed run's split is kept exactly, so that no sample it held out is trained on."""
    split = (args.seed, args.val, args.limit)
    if ck is None or not args.allow_changes:
        return split  # a changed split without --allow-changes is refused by fit, as every changed setting
    saved = ck.run_config or {}
    if not isinstance(saved, dict) or "split_seed" not in saved:
        return split
    seed, val, limit = saved.get("split_seed"), saved.get("val"), saved.get("limit")
    if not (_is_count(seed) and isinstance(val, float) and 0.0 < val < 1.0 and (limit is None or _is_count(limit))):
        raise nnx.errors.ModelFileError(ck.path, f"the checkpointed run's data split {saved!r:.200} is not a seed, "
                                                 f"a held-out fraction and a limit; the file is damaged")
    kept = (seed, val, limit)
    if kept != split:
        print(f"nnx: note: keeping the checkpointed run's data split (seed {seed}), held-out fraction {val} and "
              f"limit {limit}, so that held-out samples stay held out; this run's --seed {args.seed}, --val "
              f"{args.val} and --limit {args.limit} are not used for the split", file=sys.stderr)
    return kept


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _image_shape(ds: Any, inputs: int) -> tuple[int, int]:
    """The (height, width) of the data's images: known for MNIST and the digits, square for a CSV."""
    shape = tuple(getattr(ds, "image_shape", ()) or ())
    if len(shape) == 2 and min(shape) > 1 and shape[0] * shape[1] == inputs:
        return (int(shape[0]), int(shape[1]))
    side = math.isqrt(inputs)
    if side * side != inputs or side < 4:
        raise _UsageError(f"--model cnn needs square images of at least 4x4 pixels, one per row; "
                          f"{inputs} values per row are not a square image (use --model mlp)")
    return (side, side)


def _recipe(model: Any, args: argparse.Namespace, yt: Any, yv: Any, classes: int) -> tuple[Any, Any, Any, Any]:
    """Loss, optimizer and targets of the ``nnx train`` recipe: softmax cross-entropy on class indices, Adam."""
    loss = nnx.SoftmaxCrossEntropy()
    optimizer = nnx.Adam(model.parameters(), lr=args.lr)
    return loss, optimizer, yt, yv


def _model_for_table(args: argparse.Namespace) -> tuple[Any, Any, Any, list[str] | None]:
    """The saved model, its Standardize and ClassLabels layers (or ``None``), and the file's inputs and labels."""
    try:
        nnx.use(args.backend or backend.current())
    except UnknownBackendError as exc:
        raise _UsageError(str(exc)) from None
    model = nnx.load(args.model_file)
    modules = [m for _, m in model.named_modules()]
    scale = next((m for m in modules if isinstance(m, nnx.preprocessing.Standardize)), None)
    head = next((m for m in reversed(modules) if isinstance(m, nnx.preprocessing.ClassLabels)), None)
    first = next((m for m in modules if getattr(m, "in_features", None)), None)
    features = scale.num_features if scale is not None else getattr(first, "in_features", None)
    if features is None:
        raise _UsageError(f"{args.model_file}: cannot tell how many inputs the model takes "
                          f"(it does not start with Standardize or Linear)")
    x, label_cells = datasets.read_csv_inputs(args.data, features, scale.names if scale is not None else None,
                                              _column(args.label_column), args.header, _label_name(model, head))
    return model, head, x, label_cells


def _label_name(model: Any, head: Any) -> str | None:
    """The name of the column a model was trained to predict, if it knows it (ClassLabels or Destandardize)."""
    out = _regression_output(model)
    if out is not None:
        return out.names[0] if out.names and len(out.names) == 1 else None
    return head.name if head is not None else None


def _predict(args: argparse.Namespace) -> int:
    """Write one line per row of the CSV file: the predicted label (and the class probabilities)."""
    _writable_target("--out", args.out, [args.model_file, args.data])
    model, head, x, _ = _model_for_table(args)
    if _regression_output(model) is not None:
        return _predict_regression(args, model, x)
    classes = nnx.predict_classes(model, x)
    labels = head.labels if head is not None else None
    columns = [head.name if head is not None and head.name else "prediction"]
    if args.proba:
        probabilities = nnx.to_host(nnx.predict_proba(model, x))
        names = labels if labels is not None else list(range(probabilities.shape[1]))
        columns += [f"p({name})" for name in names]
    lines = [",".join(_csv_cell(c) for c in columns)]
    for i, label in enumerate(classes.tolist()):
        cells = [_csv_cell(label)] + ([f"{p:.6g}" for p in probabilities[i]] if args.proba else [])
        lines.append(",".join(cells))
    return _write_predictions(args, lines)


def _write_predictions(args: argparse.Namespace, lines: list[str]) -> int:
    """``nnx predict``'s CSV (a header line, then a row per sample) to ``--out`` (atomically) or stdout."""
    text = "\n".join(lines) + "\n"
    if args.out:
        nnx.io.atomic_write(args.out, [text.encode()])
        print(f"wrote {len(lines) - 1} predictions to {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def _csv_cell(value: Any) -> str:
    text = str(value)
    return f'"{text.replace(chr(34), chr(34) * 2)}"' if any(c in text for c in ',"\n\r') else text


def _evaluate(args: argparse.Namespace) -> int:
    """Score the saved model on a CSV file with labels: accuracy, per-class scores, confusion matrix."""
    model, head, x, label_cells = _model_for_table(args)
    if label_cells is None:
        name = _label_name(model, head)
        column = f" (the model predicts the column {name!r})" if name else ""
        raise _UsageError(f"{args.data} has no label column to evaluate against{column}; give a file with the "
                          f"labels, and --label-column if it is not the last")
    if _regression_output(model) is not None:
        return _evaluate_regression(args, model, x, label_cells)
    labels = head.labels if head is not None else None
    known = {str(v): i for i, v in enumerate(labels)} if labels is not None else None
    out = nnx.predict(model, x)
    classes = int(out.shape[1]) if out.shape[1] > 1 else 2
    truth = []
    for row, cell in enumerate(label_cells):
        key = _label_key(cell)
        if known is not None and key not in known:
            raise nnx.errors.DataFormatError(
                f"{args.data}: data row {row + 1}: the label {cell[:40]!r} is not one the model knows "
                f"({', '.join(repr(str(v)) for v in labels[:10])})")
        if known is None and not (key.isdigit() and int(key) < classes):
            raise nnx.errors.DataFormatError(f"{args.data}: data row {row + 1}: the label {cell[:40]!r} is not a "
                                             f"class number of this model (0 to {classes - 1})")
        truth.append(known[key] if known is not None else int(key))
    predicted = nnx.train.loop.output_classes(model, out)
    y = nnx.to_device(truth, backend.backend_of(out), dtype="int64")
    print(f"nnx evaluate {args.model_file} on {args.data}: {len(truth)} samples")
    print(nnx.metrics.report(y, predicted, labels if labels is not None else list(range(classes))))
    return 0


def _label_key(cell: str) -> str:
    """A label cell as the text of a model's label: whole numbers lose a trailing ``.0``."""
    try:
        number = float(cell)
    except ValueError:
        return cell
    return str(int(number)) if math.isfinite(number) and number == int(number) else cell


def _add_table_commands(sub: Any) -> None:
    """The ``predict`` and ``evaluate`` subcommands: a saved model on a CSV file."""
    for command, func, help_text in (
        ("predict", _predict, "predict the label of every row of a CSV file with a saved model"),
        ("evaluate", _evaluate, "score a saved model on a CSV file with labels: accuracy, per-class "
                                "precision/recall/F1 and the confusion matrix"),
    ):
        p = sub.add_parser(command, help=help_text, description=help_text + ". The file's columns are matched "
                           "to the model's inputs by header name when both have names; otherwise the file holds "
                           "the inputs in training order, plus the label column if there is one.",
                           epilog="exit codes: 0 done; 1 the model or data file is unusable (the message says "
                                  "why); 2 bad arguments")
        p.add_argument("model_file", metavar="MODEL", help="a model saved by nnx train --save or nnx.save")
        p.add_argument("data", metavar="FILE.csv", help="a CSV file (raw or .gz)")
        p.add_argument("--label-column", default="-1", metavar="INDEX|NAME",
                       help="the label column, when the file has one (-1, the last)")
        header = p.add_mutually_exclusive_group()
        header.add_argument("--header", dest="header", action="store_true", default=None,
                            help="the file's first line is a header (default: the rule of nnx.datasets.load_csv)")
        header.add_argument("--no-header", dest="header", action="store_false", help="the first line is data")
        p.add_argument("--backend", help="numpy (default), array_api_strict or cupy")
        if command == "predict":
            p.add_argument("--proba", action="store_true", help="also write each class's probability")
            p.add_argument("--out", metavar="FILE", help="write the predictions there (default: standard output)")
        p.set_defaults(func=func)


def _add_parity(sub: Any) -> None:
    """The ``parity`` subcommand: exit 0 when all agree, 1 when not, 2 for bad arguments."""
    p = sub.add_parser(
        "parity",
        help="train one model on several backends and report where they first disagree",
        description="Train copies of a model on two or more backends for K steps and compare every "
        "layer's outputs, gradients and parameters. Exits 0 when all agree, 1 when not, "
        "2 for bad arguments or an unavailable backend.",
    )
    p.add_argument("--backends", default=None,
                   help="comma-separated backends, the first is the reference "
                   "(default: every backend available here)")
    p.add_argument("--model", action="append", default=None, metavar="EXAMPLE|SAVED_FILE",
                   help=f"an example model ({', '.join(EXAMPLES)}, or 'all', the default) "
                   "or a file saved with nnx.save; repeatable")
    p.add_argument("--steps", type=int, default=None, help="training steps to compare (default 5)")
    p.add_argument("--dtype", choices=backend.FLOAT_DTYPES, default=None,
                   help="dtype of the example models (default float64)")
    p.add_argument("--rtol", type=_tolerance_value, default=None,
                   help="relative tolerance per step: step k allows k times it "
                   "(default: 1e-12 for float64, 1e-5 for float32)")
    p.add_argument("--json", dest="json_out", default=None, metavar="OUT",
                   help="also write the full report as JSON to OUT")
    traces = p.add_mutually_exclusive_group()
    traces.add_argument("--record", metavar="TRACE", default=None,
                        help="record a trace on one backend (--backends NAME, default the selected one) "
                        "instead of comparing: TRACE is the file, or a folder for several models")
    traces.add_argument("--against", metavar="TRACE", default=None,
                        help="replay a trace file (or every .nnxtrace file in a folder) on the --backends "
                        "and compare each with it")
    p.add_argument("--batch", type=_positive(int), default=None, metavar="N",
                   help="use the first N samples of each example's data (a saved model: N random samples)")
    p.add_argument("--tolerance", action="append", default=None, metavar="PATTERN=RTOL",
                   help="with --against: the relative tolerance per step of the tensors whose names match "
                   "the glob PATTERN (such as 'backward/*/weight.grad'; the report names them); repeatable")
    p.set_defaults(func=_parity)


def _parity_fail(message: str) -> int:
    print(f"nnx parity: error: {message}", file=sys.stderr)
    return 2


def _cases(specs: list[str], dtype: str, batch: int | None = None) -> list[ParityCase]:
    names: list[str] = []
    for spec in specs:
        names.extend(EXAMPLES if spec == "all" else [spec])
    cases = []
    for name in names:
        if name in EXAMPLES:
            case = example(name, dtype)
            if batch is not None:
                case.x, case.y = case.x[:batch], case.y[:batch]
            cases.append(case)
        elif os.path.exists(name):
            cases.append(_saved_case(name, batch))
        else:
            raise ValueError(f"--model {name!r} is neither an example ({', '.join(EXAMPLES)}, all) "
                             f"nor an existing file")
    return cases


def _saved_case(path: str, batch: int | None = None) -> ParityCase:
    return case_for_model(nnx.load(path, backend="numpy"), os.path.basename(path), batch=batch or 16)


def _parity_inputs(args: argparse.Namespace) -> list[Path]:
    """The files ``nnx parity`` reads: saved models given to --model and the --against trace(s)."""
    from nnx.testing.trace import SUFFIX

    inputs = [Path(m) for m in args.model or [] if os.path.isfile(m)]
    if args.against is not None:
        source = Path(args.against)
        inputs += sorted(source.glob(f"*{SUFFIX}")) if source.is_dir() else [source]
    return inputs


def _parity(args: argparse.Namespace) -> int:
    """Run the parity check the arguments describe; returns the exit status."""
    record = None if args.record is None or os.path.isdir(args.record) else args.record
    _writable_target("--json", args.json_out, _parity_inputs(args), [record])
    if args.against is not None:
        return _parity_against(args)
    if args.tolerance:
        return _parity_fail("--tolerance applies to --against TRACE only (use --rtol)")
    args.steps = 5 if args.steps is None else args.steps
    args.dtype = args.dtype or "float64"
    if args.steps < 1:
        return _parity_fail(f"--steps must be >= 1, got {args.steps}")
    if args.record is not None:
        return _parity_record(args)
    if args.backends is None:
        names = [n for n, reason in backend.available(refresh=True).items() if reason is None]
    else:
        names = [n.strip() for n in args.backends.split(",") if n.strip()]
    if len(names) < 2:
        return _parity_fail(f"parity needs two or more backends, got {names}")
    try:
        if args.rtol is not None:
            per_step(args.rtol, "--rtol", "nnx parity", args.steps)
        for name in names:
            backend.get(name)
        cases = _cases(args.model or ["all"], args.dtype)
    except (NnxError, ValueError, OSError) as exc:  # unknown/unavailable backends, unreadable files
        return _parity_fail(str(exc))

    print(f"nnx parity: reference {names[0]}, compared {', '.join(names[1:])}; {args.steps} step(s); "
          f"example models in {args.dtype}; float32 matmuls in full precision ('highest') everywhere")
    results: dict[str, Any] = {}
    ok = True
    for case in cases:
        report = check_parity(case.model, case.loss, case.x, case.y, backends=names, steps=args.steps,
                              optimizer=case.optimizer, rtol=args.rtol)
        ok = ok and report.ok
        print(f"{case.name:<10} {report}")
        results[case.name] = {"description": case.description, **report.to_dict()}
    return _parity_end(args, ok, names, results)


def _parity_end(args: argparse.Namespace, ok: bool, names: list[str], results: dict[str, Any]) -> int:
    """Write the JSON document if asked, print the verdict; the exit status."""
    _write_report(args, {"ok": ok}, names, results)
    print("all agree" if ok else "backends DIFFER (see above)")
    return 0 if ok else 1


def _write_report(args: argparse.Namespace, head: dict[str, Any], names: list[str], results: dict[str, Any]) -> None:
    """The JSON document of ``--json OUT`` (if given): ``head``, the run's settings and each model's result."""
    if args.json_out:
        document = {
            **head,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "nnx": nnx.__version__,
            "python": platform.python_version(),
            "machine": platform.machine(),
            "backends": names,
            "dtype": args.dtype,
            "steps": args.steps,
            "models": results,
        }
        nnx.io.atomic_write(args.json_out, [json.dumps(document, indent=2).encode("utf-8")])


def _parity_record(args: argparse.Namespace) -> int:
    """``nnx parity --record TRACE``: one backend, one trace file per model."""
    from nnx.testing.trace import SUFFIX, record_trace

    names = [n.strip() for n in (args.backends or backend.current()).split(",") if n.strip()]
    if len(names) != 1:
        return _parity_fail(f"--record runs on one backend (--backends NAME), got {names}")
    try:
        backend.get(names[0])
        cases = _cases(args.model or ["all"], args.dtype, args.batch)
    except (NnxError, ValueError, OSError) as exc:
        return _parity_fail(str(exc))
    target = Path(args.record)
    if len(cases) > 1 or target.is_dir() or args.record.endswith(("/", os.sep)):
        if target.exists() and not target.is_dir():
            return _parity_fail(f"--record {args.record!r}: several models need a folder, and this is a file")
        target.mkdir(parents=True, exist_ok=True)
        paths = [target / f"{case.name}{SUFFIX}" for case in cases]
    else:
        paths = [target]
    for path in paths:
        _writable_target("--record", str(path), _parity_inputs(args), [args.json_out])
    print(f"nnx parity: recording on {names[0]} ({backend.device_name(names[0])}); {args.steps} step(s); "
          f"example models in {args.dtype}; float32 matmuls in full precision ('highest')")
    total = 0
    results: dict[str, Any] = {}
    for case, path in zip(cases, paths):
        size = record_trace(case.model, case.loss, case.x, case.y, optimizer=case.optimizer, steps=args.steps,
                            backend=names[0]).save(path)
        total += size.total
        results[case.name] = {"description": case.description, "trace": str(path), "bytes": size.total}
        print(f"{case.name:<10} wrote {size}")
    print(f"{len(paths)} trace(s), {total / 1024:.1f} KiB in all")
    _write_report(args, {"ok": True, "recorded": True}, names, results)
    return 0


def _tolerances(specs: list[str] | None) -> dict[str, float]:
    out: dict[str, float] = {}
    for spec in specs or []:
        pattern, sep, value = spec.rpartition("=")
        try:
            rtol = float(value)
        except ValueError:
            rtol = -1.0
        if not sep or not pattern or not (math.isfinite(rtol) and rtol >= 0):
            raise ValueError(f"--tolerance expects PATTERN=RTOL with RTOL a number >= 0, got {spec!r}")
        out[pattern] = rtol
    return out


def _parity_against(args: argparse.Namespace) -> int:
    """``nnx parity --against TRACE``: replay a trace (or a folder of them) on local backends."""
    from nnx.testing.trace import SUFFIX, check_trace, load_trace, tolerance_rule

    for option, value in (("--model", args.model), ("--steps", args.steps), ("--dtype", args.dtype),
                          ("--batch", args.batch)):
        if value is not None:
            return _parity_fail(f"{option} does not apply to --against: the trace fixes the model, data and steps")
    if args.backends is None:
        names = [n for n, reason in backend.available(refresh=True).items() if reason is None]
    else:
        names = [n.strip() for n in args.backends.split(",") if n.strip()]
    if not names:
        return _parity_fail("--backends names no backend")
    source = Path(args.against)
    files = sorted(source.glob(f"*{SUFFIX}")) if source.is_dir() else [source]
    if not files:
        return _parity_fail(f"--against {args.against!r}: the folder holds no {SUFFIX} files")
    try:
        tolerances = _tolerances(args.tolerance)
        for name in names:
            backend.get(name)
        traces = [load_trace(path) for path in files]
        for trace in traces:
            tolerance_rule(trace, args.rtol, tolerances)
    except (NnxError, ValueError, OSError) as exc:  # unknown/unavailable backends, unreadable traces
        return _parity_fail(str(exc))
    print(f"nnx parity: replaying {len(traces)} trace(s) on {', '.join(names)}; float32 matmuls in full "
          f"precision ('highest') everywhere")
    results: dict[str, Any] = {}
    ok = True
    for trace in traces:
        meta, label = trace.metadata, trace.path.name.removesuffix(SUFFIX)
        versions = meta.get("versions", {}) if isinstance(meta.get("versions"), dict) else {}
        print(f"{label:<10} recorded on {meta.get('backend')} ({meta.get('device', 'unknown device')}), "
              f"{meta.get('dtype')}, matmuls {meta.get('matmul_precision')}, nnx {versions.get('nnx', '?')}")
        report = check_trace(trace, backends=names, rtol=args.rtol, tolerances=tolerances)
        ok = ok and report.ok
        print(f"{label:<10} {report}")
        results[label] = report.to_dict()
    return _parity_end(args, ok, names, results)


def _add_export(sub: Any) -> None:
    """``nnx export MODEL OUT``: the model's evaluation-mode forward as an ONNX file (:func:`nnx.export_onnx`)."""
    p = sub.add_parser(
        "export", help="write a saved model as an ONNX file, to serve it with onnxruntime",
        description="Write MODEL (an nnx model file) as an ONNX file: its parameters as initializers, its "
                    "evaluation-mode forward traced once, the batch axis dynamic. Needs the ONNX extra: "
                    "pip install '.[onnx]' (ndonnx, onnx, onnxruntime). The graph's input is named "
                    "'input', its output 'output'; a model ending in class labels has a second output 'label'.",
        epilog="exit codes: 0 written; 1 the model cannot be exported (the message names the layer and why) or "
               "the extra is missing; 2 bad arguments (OUT is MODEL, a directory or in a missing folder)")
    p.add_argument("model_file", metavar="MODEL", help="a model saved by nnx.save or nnx train --save")
    p.add_argument("out", metavar="OUT", help="the ONNX file to write (replaced atomically if it exists)")
    p.add_argument("--input-shape", metavar="SIZES",
                   help="the input's sizes, comma-separated, N for a dynamic axis, e.g. N,1,28,28 or N,20 "
                        "(default: what the first layer fixes, with a dynamic batch: N,784 for a Linear(784, ...); "
                        "convolutions and sequence models need it)")
    p.add_argument("--dtype", choices=backend.FLOAT_DTYPES, default=None,
                   help="the graph's float dtype (default: the model's)")

    def run(args: argparse.Namespace) -> int:
        _writable_target("OUT", args.out, [args.model_file])
        shape = None
        if args.input_shape is not None:
            try:
                shape = tuple(None if d.strip() in ("N", "n", "?") else int(d) for d in args.input_shape.split(","))
            except ValueError:
                raise _UsageError(f"--input-shape {args.input_shape!r}: give sizes and N separated by commas, "
                                  f"e.g. N,1,28,28") from None
        model = nnx.load(args.model_file, backend="numpy").eval()
        path = nnx.export_onnx(model, args.out, shape, args.dtype, inputs=[args.model_file])
        print(f"wrote {path} ({path.stat().st_size:,} bytes)")
        return 0

    p.set_defaults(func=run)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nnx", description="nnx: neural networks on the array API")
    parser.add_argument("--version", action="version", version=f"nnx {nnx.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p_info = sub.add_parser("info", help="version, and which backends can run here (and why not)")
    p_info.set_defaults(func=_info)
    p_train = sub.add_parser(
        "train",
        help="train a small network on bundled digits or on MNIST IDX/CSV files",
        description="Train a one-hidden-layer ReLU network and report its held-out accuracy.",
        epilog="exit codes: 0 trained; 1 the data, backend or training failed (the message says why); "
               "2 bad arguments",
    )
    p_train.add_argument("dataset", metavar="DATASET",
                         help="digits or mnist_5k (bundled), a folder or images file of MNIST IDX data "
                              "(raw or .gz), or a CSV file with the label in a column")
    p_train.add_argument("--backend", help="numpy (default), array_api_strict or cupy")
    p_train.add_argument("--epochs", type=_positive(int), default=None,
                         help="passes over the data (default: about 3,000 training steps, at least 20 and at "
                              "most 200 epochs, so small tables train as long as large ones)")
    p_train.add_argument("--batch-size", type=_positive(int), default=32, help="samples per step (32)")
    p_train.add_argument("--lr", type=_positive(float), default=1e-3, help="Adam's learning rate (0.001)")
    p_train.add_argument("--model", choices=("mlp", "cnn"), default="mlp",
                         help="mlp: one hidden ReLU layer (default); cnn: a LeNet-like convolutional network "
                              "on square images (two conv + pool stages, then 120 and 84 units)")
    p_train.add_argument("--hidden", type=_positive(int), default=128, help="hidden units of the mlp (128)")
    p_train.add_argument("--seed", type=_seed, default=0, help="seed of weights, split and order (0)")
    p_train.add_argument("--val", type=_fraction, default=0.2, help="held-out fraction (0.2)")
    p_train.add_argument("--limit", type=_positive(int), default=None, help="use only this many samples")
    p_train.add_argument("--label-column", default="-1", metavar="INDEX|NAME",
                         help="label column of a CSV file: an index (negative counts from the end) "
                              "or a header name (-1, the last)")
    header = p_train.add_mutually_exclusive_group()
    header.add_argument("--header", dest="header", action="store_true", default=None,
                        help="the CSV file's first line is a header (default: decided by the rule in "
                             "nnx.datasets.load_csv: a first line of names, or of the column positions)")
    header.add_argument("--no-header", dest="header", action="store_false",
                        help="the CSV file's first line is data")
    p_train.add_argument("--dtype", choices=backend.FLOAT_DTYPES, default="float32")
    p_train.add_argument("--precision", choices=("float32", *backend.LOW_DTYPES), default="float32",
                         help="compute in float16 (with loss scaling) or bfloat16, float32 master weights "
                              "(float32: no mixed precision; float16 on numpy, torch, cupy; bfloat16 on torch)")
    p_train.add_argument("--save", metavar="PATH", help="save the trained model there")
    p_train.add_argument("--plot", metavar="PNG", help="write loss and accuracy per epoch to this PNG")
    p_train.add_argument("--quiet", action="store_true", help="no progress output")
    p_train.add_argument("--checkpoint", metavar="DIR", help="checkpoint the run there after every epoch")
    p_train.add_argument("--resume", action="store_true",
                         help="continue the run checkpointed in --checkpoint DIR (if there is one); "
                              "settings that differ from that run's (--lr, --seed, --batch-size, the data "
                              "split) are refused")
    p_train.add_argument("--allow-changes", action="store_true",
                         help="with --resume: go on with this run's --lr, --batch-size and --seed, and say "
                              "so (the data split stays the checkpointed run's)")
    p_train.add_argument("--distributed", action="store_true",
                         help="data-parallel over the processes of an MPI job: mpiexec -n N nnx train ... "
                              "--distributed (--batch-size is then each process's share of a step; "
                              "needs pip install '.[distributed]' in nnx's clone)")
    p_train.add_argument("--task", choices=("classification", "regression"), default="classification",
                         help="classification (default): the label column holds classes; regression: it holds a "
                              "number to predict (MSE on the standardised target; the model answers in the "
                              "target's units; held-out RMSE, MAE and R^2; without --epochs about 600 steps)")
    p_train.set_defaults(func=_train)
    _add_table_commands(sub)
    _add_parity(sub)
    _add_export(sub)
    return parser


def _note(message: Warning | str, *args: Any, **kwargs: Any) -> None:
    """A warning raised while a command runs (a class of one sample, a label that looks like an id), as
    the command shows it: a note on standard error, without Python's file and line."""
    print(f"nnx: note: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _note
            status = args.func(args)
        sys.stdout.flush()  # inside the try: a reader that went away shows up here, not at exit
        return status
    except BrokenPipeError:  # the reader went away (`nnx info | head`): stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + 13
    except _UsageError as exc:
        parser.exit(2, f"nnx: error: {exc}\n")
    except (NnxError, OSError) as exc:  # bad data, model files, permissions, a full disk: no traceback
        print(f"nnx: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
