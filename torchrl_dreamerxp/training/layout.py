"""From TorchRL's transition layout to the DreamerV3 step layout stored in replay."""
from __future__ import annotations

import torch
from tensordict import TensorDict, TensorDictBase

from .disk_space import require_replay_space

__all__ = ["to_dreamer_layout", "extend_replay"]


def to_dreamer_layout(batch: TensorDictBase, obs_keys, state_shapes: dict[str, tuple[int, ...]],
                      lane_key: str | None = None) -> TensorDictBase:
    """Rows ``(o_t, prev_action = a_{t−1}, r_t, is_first, is_terminal, is_last)`` from collector transitions.

    A collector row holds ``o_t``, ``a_t`` and under ``"next"`` ``r_{t+1}``, ``o_{t+1}``, ``terminated``,
    ``done``. Each row becomes the stored step of ``o_{t+1}`` (reached by ``a_t``); a row that starts an
    episode (``is_first``) is preceded by a reset step ``(o_0, a=0, r=0, is_first=True)``, so the first
    observation of every episode is stored too and no step is dropped. ``"deter"``/``"stoch"`` are
    zero placeholders for the replay context the learner writes back.

    Args:
        batch: collector output ``[N]`` (one env) or ``[E, N]`` (each env's steps become one block).
        obs_keys: observation keys to store (``"observation"``, ``"pixels"``).
        state_shapes: ``{"deter": (D,), "stoch": (S, C)}``.
        lane_key: for an ``[E, N]`` batch, an entry naming each row's env (its lane for
            :class:`~torchrl_dreamerxp.replay.LaneWriter`); ``None`` adds none.

    Examples:
        >>> batch = TensorDict({"observation": torch.zeros(3, 1), "action": torch.ones(3, 2),
        ...     "is_first": torch.tensor([[True], [False], [False]]),
        ...     "next": {"observation": torch.ones(3, 1), "reward": torch.ones(3, 1),
        ...              "terminated": torch.zeros(3, 1, dtype=torch.bool), "done": torch.zeros(3, 1, dtype=torch.bool)}}, [3])
        >>> to_dreamer_layout(batch, ["observation"], {"deter": (4,), "stoch": (2, 2)})["is_first"]
        tensor([ True, False, False, False])
    """
    if batch.batch_dims == 2:
        blocks = [to_dreamer_layout(b, obs_keys, state_shapes) for b in batch.unbind(0)]
        if lane_key is not None:
            for env_index, block in enumerate(blocks):
                block[lane_key] = torch.full((block.shape[0],), env_index, dtype=torch.long, device=block.device)
        return torch.cat(blocks, 0)
    n = batch.shape[0]
    nxt = batch["next"]
    action = batch["action"].float()
    false = torch.zeros(n, dtype=torch.bool, device=action.device)

    def rows(obs_src, action, reward, is_first, term, last):
        td = TensorDict({k: obs_src[k] for k in obs_keys}, [n])
        td.update(
            {
                "prev_action": action,
                "reward": reward,
                "is_first": is_first,
                "is_terminal": term,
                "is_last": last,
            }
        )
        for key, shape in state_shapes.items():
            td[key] = torch.zeros(n, *shape, device=action.device)
        return td

    first = batch["is_first"].reshape(n)
    reset = rows(batch, torch.zeros_like(action), torch.zeros(n, device=action.device), ~false, false, false)
    step = rows(nxt, action, nxt["reward"].reshape(n).float(), false, nxt["terminated"].reshape(n), nxt["done"].reshape(n))
    keep = torch.stack([first, ~false], 1).reshape(-1)
    return torch.stack([reset, step], 1).reshape(-1)[keep]


def extend_replay(replay, batch: TensorDictBase, state, world_model, *, lane_key: str | None = None,
                  world_size: int = 1, track_returns: bool = False) -> list[float]:
    """Stores a collected round in DreamerV3 layout (the world model's observation keys, and zero placeholders
    for its replay-context states) and counts it into ``state`` (a :class:`RunState`).

    Returns the returns of the episodes the round finished (TorchRL's ``RewardSum`` ``"episode_reward"``);
    ``track_returns`` also queues them for a return-driven λ scheduler (``state.unscheduled_returns``).

    Examples:
        >>> from torchrl.data import LazyTensorStorage, TensorDictReplayBuffer
        >>> from torchrl_dreamerxp.modules import WorldModel
        >>> from torchrl_dreamerxp.training import RunState
        >>> wm = WorldModel(action_dim=2, obs_dim=1, deter=16, hidden=8, classes=4, stoch=4, units=8, blocks=4)
        >>> batch = TensorDict({"observation": torch.zeros(3, 1), "action": torch.zeros(3, 2),
        ...     "is_first": torch.tensor([[True], [False], [False]]),
        ...     "next": {"observation": torch.ones(3, 1), "reward": torch.ones(3, 1),
        ...              "terminated": torch.zeros(3, 1, dtype=torch.bool),
        ...              "done": torch.tensor([[False], [False], [True]]), "episode_reward": torch.full((3, 1), 3.0)}}, [3])
        >>> replay, state = TensorDictReplayBuffer(storage=LazyTensorStorage(10)), RunState()
        >>> extend_replay(replay, batch, state, wm), len(replay), state.env_steps, state.episodes
        ([3.0], 4, 3, 1)
    """
    batch = batch.to("cpu")  # collected on the run's device; the replay lives in host memory
    rssm = world_model.rssm
    state_shapes = {"deter": (rssm.deter,), "stoch": (rssm.stoch, rssm.classes)}
    rows = to_dreamer_layout(batch, world_model.obs_keys, state_shapes, lane_key=lane_key)
    require_replay_space(replay, rows.exclude(lane_key) if lane_key else rows)  # a full disk: an error, not SIGBUS
    replay.extend(rows)
    state.env_steps += batch.numel() * world_size  # every rank collects the same number of steps per round
    done = batch["next", "done"].reshape(-1)
    finished = batch["next", "episode_reward"].reshape(-1)[done].tolist()
    state.episodes += len(finished)
    if track_returns:
        state.unscheduled_returns = state.unscheduled_returns + finished
    return finished
