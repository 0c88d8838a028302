"""Run outputs: ``metrics.jsonl``, ``eval.csv``, the wandb run (TorchRL's ``WandbLogger``), plots, videos."""
from __future__ import annotations

import csv
import json
import os
import warnings
from pathlib import Path

import torch
from omegaconf import OmegaConf

__all__ = ["NullLogger", "RunLogger", "plot_returns", "open_loop_frames", "write_video"]


EVAL_HEADER = "env_step,env_frames,eval_return,eval_std,eval_returns\n"  # eval_returns: the episodes, ';'-joined


class RunLogger:
    """Writes every scalar to ``metrics.jsonl`` and to wandb; evaluations also to ``eval.csv``.

    Steps are agent steps (``env_step``); ``eval.csv`` and every ``metrics.jsonl`` row also carry
    ``env_frames`` (agent steps × ``action_repeat``), the x-axis of the official DreamerV3 curves.

    ``logger.mode``: ``offline`` (default, ``run_dir/wandb/offline-run-*``, sync later with
    ``wandb sync``), ``online`` (needs an account) or ``disabled``/``none`` (files only).

    Examples:
        >>> import tempfile
        >>> from omegaconf import OmegaConf
        >>> run = Path(tempfile.mkdtemp())
        >>> logger = RunLogger(run, OmegaConf.create({"logger": {"mode": "disabled"}}))
        >>> logger.log({"train/loss": 0.5}, step=16)
        >>> logger.log_eval(2000, [20.0, 23.0])
        >>> logger.finish()
        >>> (run / "eval.csv").read_text().splitlines()
        ['env_step,env_frames,eval_return,eval_std,eval_returns', '2000,2000,21.5,1.5,20.0;23.0']
    """

    def __init__(self, run_dir: Path, cfg, resume_step: int | None = None, action_repeat: int = 1):
        self.run_dir = Path(run_dir)
        self.eval_path = self.run_dir / "eval.csv"
        self.metrics_path = self.run_dir / "metrics.jsonl"
        self.action_repeat = int(action_repeat)
        if resume_step is None:
            self.eval_path.write_text(EVAL_HEADER)
            self.metrics_path.write_text("")
        else:
            # rows of the checkpoint's round and later are redone after a resume: drop them
            _truncate_after(self.eval_path, resume_step, header=True, action_repeat=self.action_repeat)
            _truncate_after(self.metrics_path, resume_step, header=False)
        self.metrics = open(self.metrics_path, "a")
        self.wandb = None
        self.wandb_failures = 0
        mode = cfg.logger.mode
        if mode not in ("offline", "online", "disabled", "none"):
            raise ValueError(f"logger.mode must be offline, online, disabled or none, got {mode!r}")
        if mode not in ("disabled", "none"):
            from torchrl.record.loggers.wandb import WandbLogger

            try:
                self.wandb = WandbLogger(
                    exp_name=f"{cfg.env.split('/')[-1]}-xp_{cfg.xp.name}-seed{cfg.seed}", save_dir=str(self.run_dir),
                    project=cfg.logger.project,
                    offline=mode == "offline", config=OmegaConf.to_container(cfg, resolve=True),
                    group=cfg.logger.get("group") or f"{cfg.env}", job_type=cfg.logger.get("job_type"),
                    tags=[cfg.model.name, f"xp={cfg.xp.name}", *cfg.logger.get("tags", [])],
                )
            except Exception as err:  # no network, no account: the run goes on with its files
                warnings.warn(f"wandb could not start ({type(err).__name__}: {err}); logging to files only", stacklevel=2)

    def _wandb(self, call, *args, **kwargs) -> None:
        """A wandb call that cannot kill training: the first failure is reported, all are counted."""
        if self.wandb is None:
            return
        try:
            call(*args, **kwargs)
        except Exception as err:
            self.wandb_failures += 1
            if self.wandb_failures == 1:
                warnings.warn(f"a wandb call failed ({type(err).__name__}: {err}); training goes on, "
                              f"metrics.jsonl and eval.csv keep every value (later failures are only counted)",
                              stacklevel=3)

    def log(self, scalars: dict[str, float], step: int) -> None:
        self.metrics.write(json.dumps({"env_step": step, "env_frames": step * self.action_repeat, **scalars}) + "\n")
        self.metrics.flush()
        if self.wandb is not None:
            for key, value in scalars.items():
                self._wandb(self.wandb.log_scalar, key, value, step=step)

    def log_eval(self, step: int, returns: list[float]) -> None:
        """One evaluation: its episodes' returns, their mean and (population) standard deviation."""
        returns = [float(r) for r in returns]
        mean = sum(returns) / len(returns)
        std = (sum((r - mean) ** 2 for r in returns) / len(returns)) ** 0.5
        with open(self.eval_path, "a", newline="") as f:
            csv.writer(f).writerow([step, step * self.action_repeat, mean, std, ";".join(map(str, returns))])
        self.log({"eval/return": mean, "eval/return_std": std}, step)

    def log_open_loop_video(self, learner, batch, step: int, context: int = 5) -> Path | None:
        """The open-loop prediction video (real | imagined) to ``videos/open_loop_<step>.mp4`` in the run
        directory (``.gif`` without an mp4 encoder) and to wandb; returns the file (``None`` without pixels)."""
        frames = open_loop_frames(learner, batch, context)
        if frames is None:
            return None
        path = write_video(frames, self.run_dir / "videos" / f"open_loop_{step:09d}")
        if self.wandb is not None:
            self._wandb(self.wandb.log_video, "eval/open_loop", frames.unsqueeze(0), step=step)
        return path

    def finish(self) -> None:
        self.metrics.close()
        if self.wandb is not None:
            self._wandb(lambda: self.wandb.experiment.finish())


class NullLogger:
    """The logger of the ranks > 0 of a ``torchrun`` run: rank 0 alone writes the run's files and wandb run.

    Examples:
        >>> NullLogger().log({"train/loss": 1.0}, step=0)
    """

    def log(self, scalars: dict[str, float], step: int) -> None:
        pass

    def log_eval(self, step: int, returns: list[float]) -> None:
        pass

    def log_open_loop_video(self, learner, batch, step: int, context: int = 5) -> None:
        return None

    def finish(self) -> None:
        pass


def _truncate_after(path: Path, step: int, header: bool, action_repeat: int = 1) -> None:
    r"""Keep the rows of a run file written before env step ``step`` (the resumed checkpoint's round).

    Crash-safe: the kept rows go to a new file that replaces the old one in one rename, so a kill midway leaves
    the old file whole. A torn row (a kill in the middle of writing it) is skipped with a warning. An
    ``eval.csv`` from before the ``env_frames`` column gets it (agent steps × ``action_repeat``).

    Examples:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "metrics.jsonl"
        >>> _ = path.write_text('{"env_step": 16}\n{"env_step": 32}\n{"env_step": 48}\n{"env_st')
        >>> _truncate_after(path, 48, header=False)
        >>> path.read_text().splitlines()
        ['{"env_step": 16}', '{"env_step": 32}']
    """
    if not path.exists():
        path.write_text(EVAL_HEADER if header else "")
        return
    lines = path.read_text().splitlines(keepends=True)
    head, rows = (lines[:1], lines[1:]) if header else ([], lines)
    keep, torn = [], []
    for row in rows:
        if not row.strip():
            continue
        try:
            row_step = int(row.split(",")[0]) if header else int(json.loads(row).get("env_step", 0))
            if header and len(row.rstrip("\n").split(",")) != len((head[0] if head else EVAL_HEADER).split(",")):
                raise ValueError("wrong number of columns")
        except (ValueError, AttributeError) as err:
            torn.append(f"{row.strip()[:60]!r} ({err})")
            continue
        if row_step < step:
            keep.append(row if row.endswith("\n") else row + "\n")
    if torn:
        warnings.warn(f"{path}: skipped {len(torn)} unreadable row(s), torn by a crash: {'; '.join(torn[:3])}",
                      stacklevel=3)
    if header and head and head[0] != EVAL_HEADER:  # an older eval.csv: its columns, the new ones left empty
        old_names = head[0].strip().split(",")
        head = [EVAL_HEADER]
        upgraded = []
        for row in keep:
            values = dict(zip(old_names, row.strip().split(",")))
            values.setdefault("env_frames", str(int(values["env_step"]) * action_repeat))
            upgraded.append(",".join(values.get(k, "") for k in EVAL_HEADER.strip().split(",")) + "\n")
        keep = upgraded
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        f.write("".join(head + keep))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_video(frames: torch.Tensor, stem: Path, fps: int = 10) -> Path:
    """``frames`` ``[T, 3, H, W]`` uint8 to ``<stem>.mp4`` (imageio's ffmpeg) or, without it, ``<stem>.gif``.

    Examples:
        >>> import tempfile
        >>> path = write_video(torch.zeros(4, 3, 16, 16, dtype=torch.uint8), Path(tempfile.mkdtemp()) / "clip")
        >>> path.suffix in (".mp4", ".gif") and path.stat().st_size > 0
        True
    """
    import imageio.v2 as imageio

    stem.parent.mkdir(parents=True, exist_ok=True)
    images = list(frames.permute(0, 2, 3, 1).cpu().numpy())
    try:
        import imageio_ffmpeg  # noqa: F401  (the mp4 encoder)

        path = stem.with_suffix(".mp4")
        imageio.mimsave(path, images, fps=fps, macro_block_size=1)
    except ImportError:
        path = stem.with_suffix(".gif")
        imageio.mimsave(path, images, duration=1.0 / fps)
    return path


@torch.no_grad()
def open_loop_frames(learner, batch, context: int = 5, max_videos: int = 4):
    """Real vs predicted frames ``[T, 3, B·H, 2W]`` uint8 (real left, predicted right, the first ``max_videos``
    sequences stacked vertically): the posterior for ``context`` steps, then the
    prior driven by the replayed actions, decoded (the official ``report`` video); ``None`` without pixels.

    Examples:
        >>> from tensordict import TensorDict
        >>> from torchrl_dreamerxp.modules import Actor, TwoHotHead, WorldModel
        >>> from torchrl_dreamerxp.training import Learner
        >>> wm = WorldModel(action_dim=2, pixel_shape=(3, 16, 16), deter=16, hidden=8, stoch=4, classes=4, units=8,
        ...                 blocks=4, depth=4, strided_cnn=True)
        >>> feat = wm.rssm.feature_dim()
        >>> learner = Learner(wm, Actor(feat, 2, True, units=8, layers=1), TwoHotHead(feat, 8, 1))
        >>> batch = TensorDict({"pixels": torch.zeros(2, 8, 3, 16, 16, dtype=torch.uint8),
        ...                     "prev_action": torch.zeros(2, 8, 2), "is_first": torch.zeros(2, 8, dtype=torch.bool)}, [2, 8])
        >>> open_loop_frames(learner, batch, context=3).shape  # 2 sequences of 8 frames
        torch.Size([8, 3, 32, 32])
    """
    wm = learner.world_model
    if "pixels" not in wm.obs_keys:
        return None
    batch = batch[:max_videos]
    obs = {k: batch[k] for k in wm.obs_keys}
    embed = wm.encoder(**obs)
    deter, stoch = wm.rssm.initial(batch.shape[0])
    deter, stoch, _, _ = wm.rssm.observe(embed[:, :context], batch["prev_action"][:, :context],
                                         batch["is_first"][:, :context].reshape(batch.shape[0], -1), deter, stoch)
    feats = [wm.rssm.features(deter, stoch)]
    d, s = deter[:, -1], stoch[:, -1]
    for t in range(context, batch.shape[1]):
        d, s, _ = wm.rssm.img_step(d, s, batch["prev_action"][:, t])
        feats.append(wm.rssm.features(d, s).unsqueeze(1))
    pred = wm.decoder(torch.cat(feats, 1))["pixels"].clamp(0, 1)
    real = batch["pixels"].float() / 255.0
    video = torch.cat([real, pred], -1)  # [B, T, 3, H, 2W]
    video = torch.cat(list(video), -2)  # stack the batch vertically: [T, 3, B*H, 2W]
    return (video * 255).to(torch.uint8)


def plot_returns(eval_csv: Path, out_png: Path, title: str = "", random_return: float | None = None,
                 label: str = "eval return") -> None:
    """Evaluation return over env steps (± the episodes' std where ``eval.csv`` has it), as a PNG next to the run;
    ``label`` names the method.

    Examples:
        >>> import tempfile
        >>> run = Path(tempfile.mkdtemp())
        >>> _ = (run / "eval.csv").write_text("env_step,eval_return\\n1000,20.0\\n2000,60.0\\n")
        >>> plot_returns(run / "eval.csv", run / "returns.png", title="demo", random_return=18.0, label="xp=full")
        >>> (run / "returns.png").stat().st_size > 1000
        True
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(eval_csv) as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    steps, means = [int(r["env_step"]) for r in rows], [float(r["eval_return"]) for r in rows]
    ax.plot(steps, means, marker="o", label=label)
    if all(r.get("eval_std") for r in rows):
        std = [float(r["eval_std"]) for r in rows]
        ax.fill_between(steps, [m - s for m, s in zip(means, std)], [m + s for m, s in zip(means, std)], alpha=0.2,
                        label="± std over the evaluation episodes")
    if random_return is not None:
        ax.axhline(random_return, color="gray", linestyle="--", label="random policy")
    ax.set_xlabel("env steps")
    ax.set_ylabel("eval return")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
