"""Training several teachers at once (locally or on a dask.distributed cluster)."""

from __future__ import annotations

from pathlib import Path

from distill.core.config import RecipeSource
from distill.core.errors import DistillError
from distill.core.io import check_output
from distill.core.labels import TARGET_WORDS, LabelSet
from distill.core.registry import TEACHERS
from distill.data.augment import AugmentConfig
from distill.data.cache import open_dataset
from distill.data.examples import MixConfig
from distill.layers.frontend import FrontendConfig
from distill.training.crossfit import HoldoutConfig, check_folds_populated
from distill.training.fit import RunConfig, ScheduleConfig, fit_parallel


def train_teachers(
    *,
    archs: list[str],
    data: Path,
    out: Path,
    size: str = "default",
    schedule: ScheduleConfig = ScheduleConfig(),
    mix: MixConfig = MixConfig(),
    augment: AugmentConfig = AugmentConfig(),
    frontend: FrontendConfig | None = None,
    seed: int = 0,
    seeds: int = 1,
    folds: int = 1,
    jobs: int = 1,
    backend: str = "loky",
    scheduler: str | None = None,
    skip_bad: bool = False,
    cache_dir: Path | None = None,
    resume: bool = False,
    progress: bool = True,
    recipe: RecipeSource | None = None,
    words: tuple[str, ...] | None = None,
) -> list[dict]:
    """Train each architecture into ``out/<arch>`` (further seeds into ``out/<arch>-s<k>``); returns each run's metrics.

    Extra seeds of a strong family are the cheapest way to grow an ensemble: the members
    differ in initialisation, batch order and augmentation draws. With ``folds`` K > 1 each
    member becomes a fold group, ``out/<arch>-cf/fold0`` .. ``fold{K-1}``, fold k trained without
    the k-th fold of training speakers (see ``distill.training.crossfit``), for out-of-fold soft labels.
    ``words``: the target words (None: the Kaggle ten); every listed word needs a folder in ``data``.
    """
    words = tuple(words) if words is not None else TARGET_WORDS
    LabelSet(words)  # an empty list, repeats and reserved names are refused before any work
    if not archs:
        raise DistillError("no --arch given; choose from " + ", ".join(TEACHERS.names()))
    for arch in archs:
        TEACHERS.get(arch)  # unknown names fail before any work starts
    if len(set(archs)) != len(archs):
        raise DistillError(f"each --arch once please (got {archs}); train a second seed into another --out")
    if seeds < 1:
        raise DistillError(f"--seeds must be at least 1, got {seeds}")
    if folds < 1:
        raise DistillError(f"--folds must be at least 1 (1 = no cross-fitting), got {folds}")
    if jobs < 1:
        raise DistillError(f"--jobs must be at least 1, got {jobs}")
    check_output(out, kind="folder", inputs=(data,))  # before any work: a file there, a read-only folder, the data itself
    if folds > 1:
        check_folds_populated(open_dataset(Path(data), cache_dir=cache_dir, skip_bad=skip_bad, progress=progress), folds)
    if backend not in ("loky", "dask", "threading"):
        raise DistillError(f"--backend must be loky, threading or dask, got {backend!r}")
    members = [(a, k) for k in range(seeds) for a in archs]
    holdouts = [HoldoutConfig(folds=folds, fold=f) for f in range(folds)] if folds > 1 else [None]
    configs, run_dirs = [], []
    for i, (a, k) in enumerate(members):
        # "-cf" keeps a fold group apart from a full-data run of the same member in one --out, so both
        # can teach together (teacher names come from folder names and must differ)
        member_dir = Path(out) / ((a if k == 0 else f"{a}-s{k}") + ("-cf" if folds > 1 else ""))
        for holdout in holdouts:
            # seed + i for the first seed keeps single-seed runs as they were; a group's folds share the seed
            configs.append(RunConfig(family="teacher", arch=a, data=str(Path(data).resolve()), size=size, frontend=frontend, mix=mix, augment=augment,
                                     schedule=schedule, seed=seed + i, skip_bad=skip_bad, cache_dir=str(cache_dir) if cache_dir else None, holdout=holdout,
                                     recipe=recipe, words=words))
            run_dirs.append(member_dir if holdout is None else member_dir / f"fold{holdout.fold}")
    if backend != "dask":
        return fit_parallel(configs=configs, run_dirs=run_dirs, jobs=jobs, backend=backend, resume=resume, progress=progress)
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError as err:
        raise DistillError("--backend dask needs the optional dependency: pip install 'distill[dask]'") from err
    cluster = None if scheduler else LocalCluster(n_workers=max(1, jobs), threads_per_worker=1, processes=True)
    with Client(scheduler or cluster):
        try:
            return fit_parallel(configs=configs, run_dirs=run_dirs, jobs=jobs, backend="dask", resume=resume, progress=progress)
        finally:
            if cluster is not None:
                cluster.close()
