"""Train DreamerV3(-XP) on one env: python recipes/train.py env=gym/CartPole-v1 model=vector_small steps=20000

Reads top to bottom as the algorithm: build env and networks, prefill replay with random actions,
then alternate collecting ``frames_per_batch`` env steps with the updates the train ratio makes due,
evaluating, logging and checkpointing on the way. The run directory holds ``config.yaml``,
``eval.csv``, ``metrics.jsonl``, ``checkpoints/``, the wandb run, ``returns.png`` and ``done`` (last).
"""
from __future__ import annotations

import itertools
import json
import os
import shutil
import sys
import time
from functools import partial
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # no spinning threads next to the env (ARCHITECTURE.md §5)
os.environ.setdefault("WANDB_MODE", "offline")

import hydra
import torch
from omegaconf import DictConfig, OmegaConf
from torchrl.collectors import Collector
from torchrl.data import LazyMemmapStorage, LazyTensorStorage, TensorDictReplayBuffer
from torchrl.envs import EnvCreator, ParallelEnv, RewardSum, TransformedEnv
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from torchrl_dreamerxp.envs import action_repeat, make_env  # noqa: E402
from torchrl_dreamerxp.modules import DreamerPolicy  # noqa: E402
from torchrl_dreamerxp.replay import ContiguousSliceSampler, LaneWriter, PrioritizedTrajectorySampler  # noqa: E402
from torchrl_dreamerxp.training import to_dreamer_layout  # noqa: E402
from torchrl_dreamerxp.training.agent import (build_intrinsic, build_learner, build_networks,  # noqa: E402
                                              compile_networks, env_shapes)
from torchrl_dreamerxp.training.config_check import validate_config  # noqa: E402
from torchrl_dreamerxp.training.distributed import init_distributed  # noqa: E402
from torchrl_dreamerxp.training.checkpoint import latest_checkpoint, load_checkpoint, read_counters, save_checkpoint  # noqa: E402
from torchrl_dreamerxp.training.evaluation import evaluate  # noqa: E402
from torchrl_dreamerxp.training.logging import NullLogger, RunLogger, plot_returns  # noqa: E402
from torchrl_dreamerxp.training.ray_collection import make_ray_collector  # noqa: E402
from torchrl_dreamerxp.training.ratio import TrainRatio  # noqa: E402
from torchrl_dreamerxp.training.replay_context import write_back_states  # noqa: E402

CONFIG_DIR = str(Path(__file__).resolve().parents[1] / "configs")


def make_training_env(cfg: DictConfig, seed: int):
    """The env the collector steps: one env in this process, or ``cfg.envs`` envs in worker processes.

    Parallel envs run one thread each; the policy still runs here, batched over the envs.
    """
    if cfg.envs == 1:
        return make_env(cfg.env, seed=seed, device=cfg.device, **cfg.env_kwargs)
    make_one = partial(make_env, cfg.env, seed=seed, device=cfg.device,
                       **OmegaConf.to_container(cfg.env_kwargs, resolve=True))
    # num_threads: by default ParallelEnv lowers this process's torch threads by one per worker (to one
    # here), which slowed the learner by 31% at the official Atari train ratio (benchmarks/run_throughput.py)
    return ParallelEnv(cfg.envs, EnvCreator(make_one), num_sub_threads=1, num_threads=torch.get_num_threads())


def run(cfg: DictConfig) -> Path:
    validate_config(cfg)  # a typo or an impossible value fails here, before anything is built
    # under torchrun: one learner rank per process, each with its own envs and replay (data parallel);
    # rank 0 evaluates, logs and checkpoints. Steps, prefill, frames_per_batch and batch_size are totals.
    dist = init_distributed(cfg.device)
    world, rank = dist.world_size, dist.rank
    for key in ("batch_size", "frames_per_batch", "prefill", "steps"):
        if cfg[key] % world:
            raise ValueError(f"{key}={cfg[key]} must be a multiple of the {world} torchrun processes")
    run_dir = Path(dist.broadcast(str(Path(cfg.run_dir).resolve())))  # rank 0's, if it has a timestamp
    run_dir.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    if dist.is_main:
        (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    local_batch = cfg.batch_size // world

    # --- envs and networks -------------------------------------------------------------------
    ray_backend = cfg.collector.backend == "ray"
    # local: the env (or cfg.envs parallel envs) in this machine; ray: each Ray worker builds its own env
    env = make_training_env(cfg, seed=cfg.seed + 10_007 * rank) if not ray_backend else None
    eval_env = make_env(cfg.env, seed=cfg.seed + 10_000, device=cfg.device, **cfg.env_kwargs)
    shapes = env_shapes(eval_env)
    # networks and updates on cfg.device (envs step there too); replay stays in host memory
    device = torch.device(cfg.device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())  # under torchrun: this rank's GPU
    world_model, actor, critic = build_networks(cfg.model, shapes)
    if cfg.compile:  # optional: RSSM steps and MLPs compiled on first use (the first updates take longer)
        # reduce-overhead: each compiled step also replayed as a CUDA graph on a GPU (no effect on a CPU)
        mode = {"mode": "reduce-overhead"} if cfg.compile == "reduce-overhead" else {}
        compile_networks(world_model, actor, critic, dynamic=False, **mode)
    policy = DreamerPolicy(world_model, actor)
    if env is not None:
        env = TransformedEnv(env, policy.make_primer())
        env.append_transform(RewardSum())
    eval_env = TransformedEnv(eval_env, policy.make_primer())
    # XP latent reward disagreement: an ensemble's intrinsic reward mixed into the imagined one
    ensemble, reward_transform = (build_intrinsic(cfg.xp, world_model, shapes) if cfg.xp.intrinsic
                                  else (None, None))
    # .to: every network, the ensemble and the losses' own state
    learner = build_learner(cfg, world_model, actor, critic, ensemble, reward_transform).to(device).enable_data_parallel(dist)

    # --- replay: DreamerV3 step layout, contiguous slices of T + context steps ----------------
    slice_len = cfg.batch_length + cfg.replay_context
    lanes = cfg.collector.workers if ray_backend else cfg.envs  # one replay lane per env stream
    ckpt_dir = run_dir / "checkpoints"
    last = latest_checkpoint(ckpt_dir) if cfg.resume else None
    # resets add rows; never allocate more than the run needs (a resumed run keeps its capacity)
    size = (read_counters(last)["replay_capacity"] if last is not None
            else min(cfg.replay_size, (cfg.steps + cfg.steps // 2) // world + slice_len * lanes))
    size -= size % lanes  # one equal lane per env
    # the memory-mapped files of an earlier (crashed) process are stale: a resume refills from the checkpoint
    scratch = run_dir / ("replay_scratch" if world == 1 else f"replay_scratch_rank{rank}")
    shutil.rmtree(scratch, ignore_errors=True)
    storage = (LazyMemmapStorage(size, scratch_dir=scratch) if size > cfg.replay_memmap_above
               else LazyTensorStorage(size, device="cpu"))
    prioritized = cfg.xp.prioritized
    sampler = (PrioritizedTrajectorySampler(slice_len, **cfg.xp.replay) if prioritized
               else ContiguousSliceSampler(slice_len, lanes=lanes))
    # parallel envs or Ray workers: each env's steps go to its own lane, so a slice never mixes two envs
    lane_key = "lane" if lanes > 1 else None
    replay = TensorDictReplayBuffer(storage=storage, sampler=sampler, batch_size=local_batch * slice_len,
                                    **({"writer": LaneWriter(lanes, lane_key)} if lane_key else {}))
    state_shapes = {"deter": (world_model.rssm.deter,), "stoch": (world_model.rssm.stoch, world_model.rssm.classes)}
    ratio = TrainRatio(cfg.train_ratio, cfg.batch_size * cfg.batch_length)

    counters = {"env_steps": 0, "updates": 0, "episodes": 0, "replay_capacity": size, "wall_time_s": 0.0}
    if last is not None:
        counters = load_checkpoint(last, learner, replay)  # every rank: rank 0's model, replay and RNG
        ratio.load_state_dict(counters["ratio"])
        print(f"resumed from {last} at env step {counters['env_steps']}")
    if world > 1:  # ranks sample their own actions and slices
        torch.manual_seed(cfg.seed + 7919 * rank + counters["env_steps"])
    started, wall_before = time.time(), counters.get("wall_time_s", 0.0)  # wall time summed over resumes
    logger = (RunLogger(run_dir, cfg, resume_step=counters["env_steps"] if last is not None else None,
                        action_repeat=action_repeat(cfg.env, **cfg.env_kwargs))  # logs env frames beside steps
              if dist.is_main else NullLogger())
    # the bar to clear: a uniformly random policy on the evaluation env
    random_return = counters.get("random_return")
    if random_return is None and dist.is_main:
        returns = evaluate(eval_env, None, cfg.eval.episodes, cfg.eval.max_steps)
        counters["random_return"] = random_return = sum(returns) / len(returns)
        logger.log({"eval/random_return": random_return}, 0)

    def collected():  # lazily: a resumed run finishes its interrupted round before the collector starts
        totals = dict(  # this rank's share of the totals
            frames_per_batch=cfg.frames_per_batch // world,
            total_frames=max((cfg.steps - counters["env_steps"]) // world, cfg.frames_per_batch // world),
            init_random_frames=max((cfg.prefill - counters["env_steps"]) // world, 0))
        seed = cfg.seed + counters["env_steps"] + 10_007 * rank
        if ray_backend:  # remote workers (Ray actors), each stepping a CPU copy of the policy
            collector = make_ray_collector(
                policy, cfg.env, workers=cfg.collector.workers, seed=seed, worker_cpus=cfg.collector.worker_cpus,
                address=cfg.collector.ray_address, env_kwargs=OmegaConf.to_container(cfg.env_kwargs, resolve=True),
                **totals)
        else:
            collector = Collector(env, policy, auto_register_policy_transforms=False, **totals)
            collector.set_seed(seed)
        try:
            yield from collector
        finally:
            collector.shutdown()

    # --- the loop: collect a round, checkpoint when due, then its logs, updates and evaluation -------------
    # The checkpoint comes before the round's updates, so a resumed run redoes exactly those updates
    # from the same state, replay and RNG (the first updates after a resume equal the uninterrupted run's).
    resumed_round = counters.pop("round", None) if last is not None else None
    bar = tqdm(total=cfg.steps, initial=counters["env_steps"], disable=not (cfg.progress and dist.is_main),
               unit="step", dynamic_ncols=True)
    steps_now = counters["env_steps"]
    # a resumed run evaluates and logs at the env steps the uninterrupted run would have (saved with the round)
    next_eval = counters.pop("next_eval", cfg.eval.every)
    next_log = counters.pop("next_log", steps_now + cfg.logger.every)
    next_ckpt = (steps_now // cfg.checkpoint_every + 1) * cfg.checkpoint_every
    last_return, train_metrics, t0, steps0, updates0 = float("nan"), {}, time.time(), steps_now, counters["updates"]
    nonfinite_in_a_row = 0
    for batch in itertools.chain([None] if resumed_round is not None else [], collected()):
        if batch is None:  # resumed: the round whose checkpoint we loaded
            finished, frames = resumed_round["returns"], 0
        else:
            batch = batch.to("cpu")  # collected on cfg.device; the replay lives in host memory
            replay.extend(to_dreamer_layout(batch, world_model.obs_keys, state_shapes, lane_key=lane_key))
            frames = batch.numel() * world  # every rank collects the same number of steps per round
            counters["env_steps"] += frames
            done = batch["next", "done"].reshape(-1)
            finished = batch["next", "episode_reward"].reshape(-1)[done].tolist()
            counters["episodes"] += len(finished)
            if reward_transform is not None:  # a return-driven λ sees them at the next update
                counters["unscheduled_returns"] = counters.get("unscheduled_returns", []) + finished
            if counters["env_steps"] >= next_ckpt or counters["env_steps"] >= cfg.steps:
                counters["wall_time_s"] = wall_before + time.time() - started
                if dist.is_main:
                    save_checkpoint(ckpt_dir, learner, replay,
                                    {**counters, "ratio": ratio.state_dict(), "round": {"returns": finished},
                                     "next_eval": next_eval, "next_log": next_log},
                                    keep=cfg.checkpoint_keep)
                next_ckpt = (counters["env_steps"] // cfg.checkpoint_every + 1) * cfg.checkpoint_every
        for ep_return in finished:
            last_return = ep_return
            logger.log({"train/episode_return": ep_return}, counters["env_steps"])

        if counters["env_steps"] >= cfg.prefill:
            for _ in range(ratio(counters["env_steps"] - cfg.prefill)):
                sample, info = replay.sample(return_info=True)
                sample = sample.reshape(local_batch, slice_len).to(device, non_blocking=True)
                metrics = learner.update(sample)
                counters["updates"] += 1
                if metrics["skipped"]:  # a non-finite loss or gradient: nothing was changed
                    counters["nonfinite_updates"] = counters.get("nonfinite_updates", 0) + 1
                    nonfinite_in_a_row += 1
                    logger.log({"train/nonfinite_updates": counters["nonfinite_updates"]}, counters["env_steps"])
                    if nonfinite_in_a_row >= cfg.max_nonfinite_updates:
                        raise FloatingPointError(
                            f"stopped: {nonfinite_in_a_row} updates in a row had a non-finite loss or gradient "
                            f"(max_nonfinite_updates={cfg.max_nonfinite_updates}); the last good checkpoint is "
                            f"{latest_checkpoint(ckpt_dir)} (resume=true continues from it)")
                    continue
                nonfinite_in_a_row, train_metrics = 0, metrics
                # replay context: the posterior of each trained step becomes a start state later
                diag = {k: v.cpu() for k, v in learner.last_diagnostics.items()}  # to the replay's memory
                index = info["index"].reshape(local_batch, slice_len)[:, cfg.replay_context:]
                write_back_states(replay, index, diag["deter"], diag["stoch"])
                if prioritized:  # XP: each trajectory's ε and δ follow the errors of its trained steps
                    sampler.update_priority(index, {"recon_error": diag["recon_error"]})
                    sampler.update_priority(index[:, :-1], {"value_error": diag["value_error"]})
                if reward_transform is not None:  # XP: λ moves with training (and finished returns)
                    lam = reward_transform.scheduler.step(counters.pop("unscheduled_returns", []))
                    logger.log({"xp/lambda": lam}, counters["env_steps"])

        bar.update(frames)
        if counters["env_steps"] >= next_log:
            elapsed = max(time.time() - t0, 1e-9)
            rates = {"perf/env_steps_per_s": (counters["env_steps"] - steps0) / elapsed,
                     "perf/updates_per_s": (counters["updates"] - updates0) / elapsed}
            replay_stats = sampler.stats() if prioritized else {}
            logger.log({**{f"train/{k}": v for k, v in train_metrics.items()}, **rates, **replay_stats,
                        "train/updates": counters["updates"]}, counters["env_steps"])
            bar.set_postfix(ret=f"{last_return:.1f}", sps=f"{rates['perf/env_steps_per_s']:.0f}",
                            ups=f"{rates['perf/updates_per_s']:.2f}")
            t0, steps0, updates0 = time.time(), counters["env_steps"], counters["updates"]
            next_log = counters["env_steps"] + cfg.logger.every
        if counters["env_steps"] >= next_eval or counters["env_steps"] >= cfg.steps:
            if dist.is_main:
                returns = evaluate(eval_env, policy, cfg.eval.episodes, cfg.eval.max_steps)
                logger.log_eval(counters["env_steps"], sum(returns) / len(returns))
            if dist.is_main and cfg.logger.video and shapes.pixel_shape is not None and counters["updates"]:
                logger.log_open_loop_video(learner, replay.sample().reshape(local_batch, slice_len).to(device),
                                           counters["env_steps"])
            next_eval = (counters["env_steps"] // cfg.eval.every + 1) * cfg.eval.every
        if counters["env_steps"] >= cfg.steps:
            break
    bar.close()
    if not dist.is_main:
        dist.close()
        return run_dir
    plot_returns(run_dir / "eval.csv", run_dir / "returns.png", title=f"{cfg.env} ({cfg.model.name}, seed {cfg.seed})",
                 random_return=random_return)
    logger.finish()
    counters["ratio"] = ratio.state_dict()
    counters.pop("unscheduled_returns", None)
    counters["wall_time_s"] = wall_before + time.time() - started
    counters["world_size"] = world
    (run_dir / "done").write_text(json.dumps(counters))
    dist.close()
    return run_dir


@hydra.main(config_path=CONFIG_DIR, config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_dir = run(cfg)
    print(f"run directory: {run_dir}")


if __name__ == "__main__":
    main()
