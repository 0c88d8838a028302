"""One training step of the recipe: sample → update → the update's feedback to the replay and its sampler → λ step."""
from __future__ import annotations

import torch
from torchrl.data import ReplayBuffer

from ..replay import PrioritizedTrajectorySampler
from .learner import Learner
from .replay_context import write_back_states
from .run_state import RunState

__all__ = ["train_step", "stop_if_diverging"]


def train_step(learner: Learner, replay: ReplayBuffer, state: RunState, *, batch_size: int, slice_len: int,
               context: int, device: torch.device | str = "cpu") -> dict[str, float]:
    """Samples ``batch_size`` slices of ``slice_len`` steps, makes one :meth:`Learner.update` and returns its metrics.

    After an update that was not skipped (non-finite loss or gradient: counted in ``state``, nothing written):

    - replay context: each trained step's posterior state goes back into the storage, the start state of a
      later slice that begins after it;
    - XP prioritized replay (a :class:`~torchrl_dreamerxp.replay.PrioritizedTrajectorySampler`): each
      trajectory's reconstruction error ε and critic error δ follow the errors of its trained steps;
    - XP intrinsic reward: the λ scheduler steps (with the episode returns finished since its last step);
      the metrics then carry ``"lambda_next"``, the λ of the next imagination.

    Examples:
        >>> from tensordict import TensorDict
        >>> from torchrl.data import LazyTensorStorage, TensorDictReplayBuffer
        >>> from torchrl_dreamerxp.modules import Actor, TwoHotHead, WorldModel
        >>> from torchrl_dreamerxp.replay import ContiguousSliceSampler
        >>> wm = WorldModel(action_dim=2, obs_dim=3, deter=16, hidden=8, classes=4, stoch=4, units=8, blocks=4)
        >>> learner = Learner(wm, Actor(wm.rssm.feature_dim(), 2, True, units=8, layers=1),
        ...                   TwoHotHead(wm.rssm.feature_dim(), 8, 1), horizon=3)
        >>> replay = TensorDictReplayBuffer(storage=LazyTensorStorage(40), sampler=ContiguousSliceSampler(5), batch_size=10)
        >>> _ = replay.extend(TensorDict({"observation": torch.randn(40, 3), "prev_action": torch.zeros(40, 2),
        ...     "reward": torch.zeros(40), "is_first": torch.zeros(40, dtype=torch.bool),
        ...     "is_terminal": torch.zeros(40, dtype=torch.bool), "is_last": torch.zeros(40, dtype=torch.bool),
        ...     "deter": torch.zeros(40, 16), "stoch": torch.zeros(40, 4, 4)}, [40]))
        >>> state = RunState()
        >>> metrics = train_step(learner, replay, state, batch_size=2, slice_len=5, context=1)
        >>> state.updates, metrics["skipped"], bool(replay.storage[:]["deter"].abs().sum() > 0)
        (1, 0.0, True)
    """
    sample, info = replay.sample(return_info=True)
    metrics, feedback = learner.update(sample.reshape(batch_size, slice_len).to(device, non_blocking=True))
    state.updates += 1
    if feedback is None:  # skipped: nothing of this batch goes back
        state.nonfinite_updates += 1
        state.nonfinite_in_a_row += 1
        return metrics
    state.nonfinite_in_a_row = 0
    feedback = feedback.to("cpu")  # to the replay's memory
    index = info["index"].reshape(batch_size, slice_len)[:, context:]
    write_back_states(replay, index, feedback["deter"], feedback["stoch"])
    sampler = replay.sampler
    if isinstance(sampler, PrioritizedTrajectorySampler):  # XP: trajectory scores follow the trained steps' errors
        sampler.update_priority(index, feedback.select("recon_error", "value_error"))  # one call, both quantities
    if learner.reward_transform is not None:  # XP: λ moves with training (and finished returns)
        metrics["lambda_next"] = learner.reward_transform.scheduler.step(state.unscheduled_returns)
        state.unscheduled_returns = []
    return metrics


def stop_if_diverging(state: RunState, limit: int, checkpointer) -> None:
    """Raises ``FloatingPointError`` once ``limit`` updates in a row were skipped, naming the last good checkpoint.

    Examples:
        >>> stop_if_diverging(RunState(nonfinite_in_a_row=3), limit=20, checkpointer=None)  # goes on
    """
    if state.nonfinite_in_a_row >= limit:
        raise FloatingPointError(
            f"stopped: {state.nonfinite_in_a_row} updates in a row had a non-finite loss or gradient "
            f"(max_nonfinite_updates={limit}); the last good checkpoint is {checkpointer.latest()} "
            f"(resume=true continues from it)")
