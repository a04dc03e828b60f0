"""The whole pipeline on synthesized data, as one call (chains library functions, not the CLI).

Stages so far: synthesize a demo tree with a shifted unlabeled test folder ->
build the decoded cache and print the dataset's stats. Each stage reports what
it made; the summary is written as JSON to ``out/summary.json``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from .data import dataset_stats
from .io import write_json
from .synth import SynthConfig, synthesize_dataset


@dataclass(frozen=True)
class DemoConfig:
    speakers: int = 40
    test_clips: int = 400
    seed: int = 0
    jobs: int = 2


@dataclass
class DemoResult:
    out: Path
    stages: list[dict] = field(default_factory=list)
    stats_table: str = ""

    def summary(self) -> dict:
        return {"out": str(self.out), "stages": self.stages}


def run_demo(*, out: Path, config: DemoConfig = DemoConfig(), progress: bool = True, log=print) -> DemoResult:
    out = Path(out)
    result = DemoResult(out=out)

    def stage(name: str, fn):
        log(f"== {name}")
        started = time.time()
        value, info = fn()
        result.stages.append({"stage": name, "seconds": round(time.time() - started, 1), **info})
        write_json(out / "summary.json", result.summary())
        return value

    synth = stage("synth", lambda: _synth(out, config, progress))
    stats = stage("index", lambda: _index(synth.out, out, progress))
    result.stats_table = stats.to_table()
    return result


def _synth(out: Path, config: DemoConfig, progress: bool):
    synth_config = SynthConfig(speakers=config.speakers, test_clips=config.test_clips, seed=config.seed)
    marker = out / "data" / "synth_config.json"
    result = synthesize_dataset(out=out / "data", config=synth_config, jobs=config.jobs, test_dir=out / "kaggle_test",
                                answer_key=out / "kaggle_test_answers.csv", overwrite=marker.exists(), progress=progress)
    return result, {"clips": result.clips, "speakers": result.speakers, "test_clips": config.test_clips, "data": str(result.out)}


def _index(data: Path, out: Path, progress: bool):
    stats = dataset_stats(root=data, cache_dir=out / "cache", progress=progress)
    return stats, {"clips": stats.total_clips, "speakers": stats.speaker_counts, "bad_files": len(stats.bad_files)}
