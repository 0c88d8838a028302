"""Train DreamerV3(-XP) on one env: python recipes/train.py env=gym/CartPole-v1 steps=20000

Reads top to bottom as the algorithm: build env, networks and replay, then collect a round of
``frames_per_batch`` env steps (random actions for the prefill), store it, checkpoint when due, make the
updates the train ratio asks for, log and evaluate. The run directory holds ``config.yaml``, ``eval.csv``,
``metrics.jsonl``, ``checkpoints/``, the wandb run, ``returns.png`` and ``done`` (last).
"""
from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # no spinning threads next to the env (docs/benchmarks.md)
os.environ.setdefault("WANDB_MODE", "offline")

import hydra
import torch
from omegaconf import DictConfig, OmegaConf
from torchrl.envs import RewardSum

from torchrl_dreamerxp.envs import action_repeat, make_env
from torchrl_dreamerxp.training.agent import build_agent, env_shapes
from torchrl_dreamerxp.training.builders import (default_replay_capacity, make_collector, make_replay, make_training_env,
                                                replay_lanes, with_transforms)
from torchrl_dreamerxp.training.checkpointer import Checkpointer
from torchrl_dreamerxp.training.config_check import validate_config
from torchrl_dreamerxp.training.distributed import init_distributed
from torchrl_dreamerxp.training.evaluation import evaluate
from torchrl_dreamerxp.training.exact_resume import CollectionLog
from torchrl_dreamerxp.training.graceful_stop import GracefulStop, RunStopped
from torchrl_dreamerxp.training.layout import extend_replay
from torchrl_dreamerxp.training.precision import UNRECORDED_PRECISION
from torchrl_dreamerxp.training.logging import NullLogger, RunLogger, plot_returns
from torchrl_dreamerxp.training.progress import Progress
from torchrl_dreamerxp.training.ratio import TrainRatio
from torchrl_dreamerxp.training.run_state import RunState
from torchrl_dreamerxp.training.train_step import stop_if_diverging, train_step
from torchrl_dreamerxp.paths import config_dir

CONFIG_DIR = str(config_dir())


def run(cfg: DictConfig) -> Path:
    """One training run of ``cfg`` to its ``steps``; returns its run directory (raises :class:`RunStopped` on
    SIGTERM or Ctrl-C, after a checkpoint)."""
    # from the start: a signal while the run builds, evaluates the random policy or redoes a resumed round's
    # updates (compiling) stops it at its first round, checkpointed, like one that comes later
    with GracefulStop() as stop:
        return _train(cfg, stop)


def _train(cfg: DictConfig, stop: GracefulStop) -> Path:
    auto_precision = cfg.get("precision") == "auto"  # validate_config resolves it for this machine
    validate_config(cfg)  # a typo or an impossible value fails here, before anything is built
    # under torchrun: one learner rank per process, each with its own envs and replay (data parallel);
    # rank 0 evaluates, logs and checkpoints. Steps, prefill, frames_per_batch and batch_size are totals.
    dist = init_distributed(cfg.device)
    world, rank = dist.world_size, dist.rank
    run_dir = Path(dist.broadcast(str(Path(cfg.run_dir).resolve())))  # rank 0's, if it has a timestamp
    run_dir.mkdir(parents=True, exist_ok=True)
    dist.require_multiples(cfg, ("batch_size", "frames_per_batch", "prefill", "steps"))  # per-rank shares
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    checkpointer = Checkpointer(run_dir, every=cfg.checkpoint_every, keep=cfg.checkpoint_keep, resume=cfg.resume,
                                rank=rank, world_size=world)  # resume=true: the newest loadable checkpoint or an error
    recorded = checkpointer.recorded("precision", missing=UNRECORDED_PRECISION) if auto_precision else None
    if recorded not in (None, cfg.precision):
        # precision=auto picks what this machine computes fastest for a new run; a resumed run goes on in the
        # precision its checkpoints were made with (say, a float32 run of an older default, or another machine)
        print(f"resume=true, precision=auto: this run keeps its recorded precision={recorded}", flush=True)
        cfg.precision = recorded
    checkpointer.check_config(cfg)  # a resumed run keeps the env, model, seed, ... its checkpoints were made with
    if dist.is_main:
        (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    local_batch, slice_len = cfg.batch_size // world, cfg.batch_length + cfg.replay_context

    # --- envs, networks, learner (on cfg.device; Ray workers build their own envs) ---------------
    env = make_training_env(cfg, seed=cfg.seed + 10_007 * rank) if cfg.collector.backend == "local" else None
    eval_env = make_env(cfg.env, seed=cfg.seed + 10_000, device=cfg.device, **cfg.env_kwargs)
    device = dist.device(cfg.device)
    learner, policy = build_agent(cfg, env_shapes(eval_env), device, dist)  # + the XP ensemble with xp.intrinsic
    wm = learner.world_model
    if env is not None:  # the policy's recurrent state rides in the tensordict; RewardSum gives episode returns
        env = with_transforms(env, policy.make_primer(), RewardSum())
    eval_env = with_transforms(eval_env, policy.make_primer())

    # --- replay and run state (a resumed run restores both from its checkpoint) ----------------------
    capacity = checkpointer.replay_capacity(default_replay_capacity(cfg, world))
    replay = make_replay(cfg, capacity, checkpointer.scratch_dir(), local_batch)
    state = RunState(replay_capacity=capacity, next_eval=cfg.eval.every, next_log=cfg.logger.every)
    ratio = TrainRatio(cfg.train_ratio, cfg.batch_size * cfg.batch_length)
    resumed = checkpointer.restore(learner, replay, state, cfg.seed)
    ratio.load_state_dict(state.ratio)
    # one local env resumes exactly: its actions so far are recorded and replayed (training/exact_resume.py)
    log, saved = CollectionLog.for_run(cfg.exact_resume and cfg.envs == 1 and env is not None, checkpointer.collection,
                                       eval_env, resumed=resumed)
    started, wall_before = time.time(), state.wall_time_s  # wall time summed over resumes
    logger = (RunLogger(run_dir, cfg, resume_step=state.env_steps if resumed else None,
                        action_repeat=action_repeat(cfg.env, **cfg.env_kwargs)) if dist.is_main else NullLogger())
    if dist.is_main:  # a line before anything slow (a pixel env's random-policy evaluation takes a while)
        print(f"{cfg.env} · {cfg.model.name} · xp={cfg.xp.name} · seed {cfg.seed}: " + (
            f"resumed at env step {state.env_steps}" if resumed else
            f"evaluating the random policy ({cfg.eval.episodes} episodes), then {cfg.steps} env steps"), flush=True)
    if state.random_return is None and dist.is_main:  # the bar to clear: a uniformly random policy
        returns = evaluate(eval_env, None, cfg.eval.episodes, cfg.eval.max_steps)
        state.random_return = sum(returns) / len(returns)
        logger.log({"eval/random_return": state.random_return}, 0)
    progress = Progress(cfg.steps, cfg.logger.every, state, show=cfg.progress and dist.is_main,
                        status_file=run_dir / "progress.json" if dist.is_main else None, quiet=not dist.is_main)

    def learn_and_report(finished: list[float], frames: int) -> None:
        """A collected round's episode logs, the updates now due, then the scalar log and evaluation when due."""
        for ep_return in finished:
            logger.log({"train/episode_return": ep_return}, state.env_steps)
            progress.last_return = ep_return
        for _ in range(ratio(state.env_steps - cfg.prefill) if state.env_steps >= cfg.prefill else 0):
            metrics = train_step(learner, replay, state, batch_size=local_batch, slice_len=slice_len,
                                 context=cfg.replay_context, device=device)
            if metrics["skipped"]:  # a non-finite loss or gradient: nothing was changed
                logger.log({"train/nonfinite_updates": state.nonfinite_updates}, state.env_steps)
                stop_if_diverging(state, cfg.max_nonfinite_updates, checkpointer)
                continue
            progress.train_metrics = metrics
            if "lambda_next" in metrics:
                logger.log({"xp/lambda": metrics["lambda_next"]}, state.env_steps)
        progress.round_done(frames, state, logger, extra=replay.sampler.stats if cfg.xp.prioritized else None)
        if state.env_steps >= state.next_eval or state.env_steps >= cfg.steps:
            if dist.is_main:
                returns = evaluate(eval_env, policy, cfg.eval.episodes, cfg.eval.max_steps)
                logger.log_eval(state.env_steps, returns)
                if cfg.logger.video and "pixels" in wm.obs_keys and state.updates:
                    logger.log_open_loop_video(learner, replay.sample().reshape(local_batch, slice_len).to(device),
                                               state.env_steps)
            state.next_eval = (state.env_steps // cfg.eval.every + 1) * cfg.eval.every

    # --- the loop: collect a round, store it, checkpoint when due, then its updates, logs and evaluation ---
    if resumed:  # the checkpoint came before its round's updates: redo them from the same state, replay and RNG
        learn_and_report(state.round_returns, 0)
    stopping = False  # SIGTERM / Ctrl-C (stop): checkpoint the next round, then stop (a resume loses nothing)
    for batch in make_collector(cfg, env, policy, state, rank, world, log=log, resume_from=saved):
        if log is not None:
            log.record(batch)
        finished = extend_replay(replay, batch, state, wm, world_size=world,
                                 lane_key="lane" if replay_lanes(cfg) > 1 else None,
                                 track_returns=learner.reward_transform is not None)
        stopping = not dist.all_true(not stop.requested)  # a signal on any rank stops every rank here
        if checkpointer.due(state, cfg.steps) or stopping:
            state.ratio, state.round_returns = ratio.state_dict(), finished
            state.wall_time_s = wall_before + time.time() - started
            collection = log.state_dict(eval_env) if log is not None else None
            logger.log({"checkpoint/megabytes": checkpointer.save(learner, replay, state, collection) / 1e6},
                       state.env_steps)
        if stopping:
            break
        learn_and_report(finished, batch.numel() * world)
        if state.env_steps >= cfg.steps:
            break
    progress.close()
    if stopping:
        stopped = RunStopped(stop.signum or signal.SIGTERM, state.env_steps, run_dir)
        if dist.is_main:
            logger.finish()
            print(stopped, flush=True)
        dist.close()
        raise stopped
    if dist.is_main:
        plot_returns(run_dir / "eval.csv", run_dir / "returns.png", random_return=state.random_return,
                     title=f"{cfg.env} ({cfg.model.name}, xp={cfg.xp.name}, seed {cfg.seed})",
                     label="DreamerV3" if cfg.xp.name == "none" else f"DreamerV3-XP (xp={cfg.xp.name})")
        logger.finish()
        state.ratio, state.wall_time_s = ratio.state_dict(), wall_before + time.time() - started
        (run_dir / "done").write_text(json.dumps(state.summary(world)))
    dist.close()
    return run_dir


@hydra.main(config_path=CONFIG_DIR, config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_dir = run(cfg)
    print(f"run directory: {run_dir}")


if __name__ == "__main__":
    main()
