"""``python -m depthlib train densedepth | mvsnet | casmvsnet``: one training set-up for every model.

The run folder is checked first (before any data is rendered or read); an option left out takes the
resumed run's setting, else the profile's (``train_config``); ``fit_and_report`` trains and says what
happened. ``depthlib.cascade_cli`` builds the cascade's run on the same functions.
"""
from __future__ import annotations

from pathlib import Path

from depthlib.cli_args import data_label, dtu_root, first_given, mvs_sizes, nyu_root, report_error

__all__ = ["prepare_run", "train_config", "previous_run", "check_init", "fit_and_report", "train_densedepth",
           "train_mvsnet"]


def train_densedepth(args) -> int:
    """``train densedepth``: the data set, model and Trainer from the options; returns the exit status."""
    from depthlib.checkpoint_io import load_model_state
    from depthlib.data import NYUDepth
    from depthlib.metrics import evaluate
    from depthlib.models import DenseDepth, predict_depth
    from depthlib.profiles import get_profile
    from depthlib.train import DenseDepthTask, Trainer

    profile = get_profile(args.profile)
    stored, _ = args.previous
    size = tuple(first_given(args.size, stored.get("size"), profile.nyu_size))
    encoder = first_given(args.encoder, stored.get("encoder"), profile.densedepth_encoder)
    max_depth = first_given(args.max_depth, stored.get("max_depth"), 10.0)
    metadata = {"model": "densedepth", "encoder": encoder, "size": list(size), "max_depth": max_depth,
                "data": data_label(args.data), "init": Path(args.init).name if args.init else None}
    init = None
    if args.init:  # fine-tune: start from these weights (a fresh optimiser and schedule)
        from depthlib.models import load_densedepth

        init = load_densedepth(args.init)
        if init.metadata.get("encoder") != encoder:
            raise ValueError(f"--init {args.init} holds a {init.metadata.get('encoder')!r} encoder, "
                             f"but this run trains {encoder!r} (set --encoder to match)")
        check_init(args, init.metadata, metadata)
    root = nyu_root(args.data, profile, args.n_train, args.n_test)  # after the checks: rendering takes a while
    train_set = NYUDepth(root, "train", size=size, augment=True)
    test_set = NYUDepth(root, "test", size=size) if args.val else None
    pretrained = {"none": False, "imagenet": True}.get(args.pretrained, args.pretrained)
    model = DenseDepth(encoder, pretrained=pretrained)
    if init is not None:
        load_model_state(model, init.state_dict(), args.init)
    config = train_config(args, profile, lr=1e-4)

    def validate(trained):
        return evaluate(lambda images: predict_depth(trained, images, max_depth), test_set,
                        flip_tta=False, crop=None, max_depth=max_depth)

    trainer = Trainer(model, train_set, DenseDepthTask(max_depth), args.out, config,
                      evaluate=validate if args.val else None, metadata=metadata)
    if trainer.rank == 0:
        print(f"DenseDepth ({encoder}) on {len(train_set)} training images of {size[0]}x{size[1]}, "
              f"{config.epochs} epochs of {trainer.steps_per_epoch} steps, device {trainer.device}")
    return fit_and_report(trainer, args)


def train_config(args, profile, lr):
    """The options, else the resumed run's settings, else the profile's (lr: the paper's)."""
    from depthlib.train import TrainConfig

    _, stored = args.previous
    return TrainConfig(epochs=first_given(args.epochs, stored.get("epochs"), profile.epochs),
                       batch_size=first_given(args.batch_size, stored.get("batch_size"), profile.batch_size),
                       lr=first_given(args.lr, stored.get("lr"), lr),
                       schedule=first_given(args.schedule, stored.get("schedule"), "constant"),
                       warmup_steps=first_given(args.warmup_steps, stored.get("warmup_steps"), 0), amp=args.amp,
                       channels_last=args.channels_last, cudnn_benchmark=args.cudnn_benchmark,
                       sync_bn=args.sync_bn, compile=args.compile, num_workers=profile.num_workers,
                       seed=first_given(args.seed, stored.get("seed"), 0), checkpoint_every=args.checkpoint_every,
                       progress=not args.no_progress)


def previous_run(args):
    """(metadata, config) of the run this one continues (--resume) or starts from (--init, metadata only):
    the defaults of the options left out, so that `--resume` alone continues a run as it was started."""
    from depthlib.checkpoint_io import read_torch_file

    checkpoint = Path(args.out) / "checkpoint.pt"
    if args.resume and checkpoint.is_file():
        state = read_torch_file(checkpoint, mmap=True)
        return dict(state.get("metadata") or {}), dict(state.get("config") or {})
    if args.init:
        from depthlib.data.download import shipped_file

        state = read_torch_file(shipped_file(args.init))
        return dict(state.get("metadata") or {}) if isinstance(state, dict) else {}, {}
    return {}, {}


def check_init(args, stored: dict, current: dict) -> None:
    """--init weights must come from the same architecture; sizes, depth range and planes must match too
    unless --accept-changes (the data may differ, and how the loss weighs the refinement or whether the
    backbone trains: that is what fine-tuning is for)."""
    from depthlib.checkpoint_io import run_differences

    run_differences(stored, current, f"--init {args.init}", accept=args.accept_changes,
                    ignore=("init", "data", "refine_weight", "frozen_backbone"))


def fit_and_report(trainer, args) -> int:
    """Train, then say what happened: the last epoch, nothing left to train, or failed validations (exit 1)."""
    history = trainer.fit(resume=args.resume, overwrite=args.overwrite, accept_changes=args.accept_changes)
    if trainer.rank != 0:
        return 0
    if history:
        print(f"done: {trainer.checkpoint_path}; last epoch: " +
              ", ".join(f"{k} {v:.4f}" for k, v in history[-1].items() if isinstance(v, float)))
    else:
        print(f"nothing to train: {trainer.checkpoint_path} is at epoch {trainer.epoch} of --epochs "
              f"{trainer.config.epochs} (raise --epochs to train on)")
    if trainer.failed_validations:
        epochs = ", ".join(str(epoch) for epoch, _ in trainer.failed_validations)
        report_error(f"validation failed after epoch(s) {epochs}: {trainer.failed_validations[-1][1]}; the "
                     f"checkpoints are saved in {trainer.out_dir} and log.jsonl records val_error (fix the test "
                     "data, then run eval)")
        return 1
    return 0


def train_mvsnet(args) -> int:
    """``train mvsnet``: the data set, model and Trainer from the options; returns the exit status."""
    from depthlib.checkpoint_io import load_model_state
    from depthlib.data import DTUMVS
    from depthlib.models import MVSNet, evaluate_mvsnet
    from depthlib.profiles import get_profile
    from depthlib.train import MVSNetTask, Trainer

    profile = get_profile(args.profile)
    stored, _ = args.previous
    n_views, n_depths = mvs_sizes(args, profile, stored)
    interval_scale = first_given(args.interval_scale, stored.get("interval_scale"))
    refine = not args.no_refine if args.no_refine is not None else stored.get("refine", True)
    refine_weight = first_given(args.refine_weight, stored.get("refine_weight"), 0.5)
    frozen = first_given(args.freeze_backbone, stored.get("frozen_backbone"), False)
    metadata = {"model": "mvsnet", "refine": refine, "n_views": n_views, "n_depths": n_depths,
                "interval_scale": interval_scale, "data": data_label(args.data),
                "init": Path(args.init).name if args.init else None, "refine_weight": refine_weight,
                "frozen_backbone": frozen}
    init = None
    if args.init:  # fine-tune: start from these weights (a fresh optimiser and schedule)
        from depthlib.models import load_mvsnet

        init = load_mvsnet(args.init)
        check_init(args, init.metadata, metadata)
    root = dtu_root(args.data, profile, args.n_scans, args.size)  # after the checks: rendering takes a while
    train_set = DTUMVS(root, "train", n_views=n_views, n_depths=n_depths, interval_scale=interval_scale)
    val_set = DTUMVS(root, "val", n_views=n_views, n_depths=n_depths, interval_scale=interval_scale) \
        if args.val else None
    model = MVSNet(refine=refine)
    if init is not None:
        load_model_state(model, init.state_dict(), args.init)
    if frozen:
        if not refine or init is None or refine_weight == 0:
            raise SystemExit("--freeze-backbone trains the refinement network alone on a trained backbone: "
                             "it needs --init, a refinement (no --no-refine) and --refine-weight > 0")
        model.freeze_backbone()
    config = train_config(args, profile, lr=1e-3)
    trainer = Trainer(model, train_set, MVSNetTask(refine_weight), args.out, config,
                      evaluate=(lambda trained: evaluate_mvsnet(trained, val_set)) if args.val else None,
                      metadata=metadata)
    if trainer.rank == 0:
        height, width = train_set[0]["imgs"].shape[-2:]
        print(f"MVSNet on {len(train_set)} training samples of {n_views} views at {height}x{width}, D={n_depths}, "
              f"{config.epochs} epochs of {trainer.steps_per_epoch} steps, device {trainer.device}")
    return fit_and_report(trainer, args)


def prepare_run(args) -> None:
    """Before any data is rendered or read: the run folder is checked (``--resume`` / ``--overwrite``)
    and ``args.previous`` holds the (metadata, config) of the run this one continues or starts from."""
    from depthlib.checkpoint_io import check_run_folder

    check_run_folder(args.out, args.resume, args.overwrite)
    args.previous = previous_run(args)
