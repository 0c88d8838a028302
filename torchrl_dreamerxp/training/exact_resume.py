"""Exact resume of the local collection: the env is brought back to where the checkpoint left it.

A checkpoint stores the weights, the replay and every RNG of this process; what it cannot store as data is a
live env in the middle of an episode. For one local env (``envs=1``, ``collector.backend=local``) the
checkpoint also keeps :class:`CollectionLog`'s record: every action the training env took since the run
began, the collector's carrier (the next step's input: the observation, the policy's recurrent state, the
running episode return) and the evaluation env's RNG. On resume the freshly built env is seeded as at the
start and stepped through the recorded actions, which repeats every reset and step, so its state and its RNG
are the ones the checkpoint left; the carrier is then put back, and the run goes on update for update as if
never stopped. This costs one env step per recorded step (seconds for vector envs). Parallel envs and Ray
workers resume as before: from fresh episodes.
"""
from __future__ import annotations

import contextlib
import random
import warnings
from typing import Any, Iterator

import numpy as np
import torch
from tensordict import TensorDict, TensorDictBase

__all__ = ["CollectionLog", "replay_actions", "env_rng_state", "set_env_rng_state", "rngs_kept"]


@contextlib.contextmanager
def rngs_kept(enabled: bool = True) -> Iterator[None]:
    """Puts torch's, numpy's and Python's global RNGs back as they were when the block ends.

    Examples:
        >>> with rngs_kept():
        ...     _ = torch.rand(3)
        >>> a = torch.rand(1)
        >>> state = torch.get_rng_state()
        >>> with rngs_kept():
        ...     _ = torch.rand(5)
        >>> bool(torch.equal(torch.get_rng_state(), state))
        True
    """
    if not enabled:
        yield
        return
    saved = torch.get_rng_state(), np.random.get_state(), random.getstate()
    try:
        yield
    finally:
        torch.set_rng_state(saved[0])
        np.random.set_state(saved[1])
        random.setstate(saved[2])


def _gym_rng(env) -> np.random.Generator | None:
    """The numpy generator of a gymnasium env under TorchRL wrappers (``None`` for other envs)."""
    base = getattr(env, "base_env", env)
    raw = getattr(base, "_env", None)
    unwrapped = getattr(raw, "unwrapped", None)
    rng = getattr(unwrapped, "np_random", None)
    return rng if isinstance(rng, np.random.Generator) else None


def env_rng_state(env) -> dict | None:
    """The RNG state of a gymnasium env (plain numbers), ``None`` where the env has none we can read.

    Examples:
        >>> from torchrl_dreamerxp.envs import make_env
        >>> env = make_env("gym/CartPole-v1", seed=0)
        >>> saved = env_rng_state(env)
        >>> first = env.reset()["observation"]
        >>> set_env_rng_state(env, saved)
        >>> bool((env.reset()["observation"] == first).all())
        True
    """
    rng = _gym_rng(env)
    return None if rng is None else rng.bit_generator.state


def set_env_rng_state(env, state: dict | None) -> None:
    """Restores :func:`env_rng_state` (its example restores one); ``None`` leaves the env's RNG as it is.

    Examples:
        >>> set_env_rng_state(object(), {"state": 1})  # no gymnasium generator to set: nothing happens
    """
    rng = _gym_rng(env)
    if rng is not None and state is not None:
        rng.bit_generator.state = state


def replay_actions(env, carrier: TensorDictBase, actions: torch.Tensor) -> TensorDictBase:
    """Steps ``env`` from ``carrier`` through ``actions`` ``[n, *action]`` as a collector would (auto-reset
    at episode ends); returns the carrier of the step after the last.

    Examples:
        >>> from torchrl_dreamerxp.envs import make_env
        >>> env = make_env("gym/CartPole-v1", seed=0)
        >>> actions = torch.nn.functional.one_hot(torch.randint(2, (30,)), 2)
        >>> a = replay_actions(env, env.reset(), actions)
        >>> _ = env.set_seed(0)
        >>> b = replay_actions(env, env.reset(), actions)
        >>> bool((a["observation"] == b["observation"]).all())
        True
    """
    for action in actions:
        carrier.set("action", action.to(carrier.device) if carrier.device else action)
        _, carrier = env.step_and_maybe_reset(carrier)
    return carrier


class CollectionLog:
    """What an exact resume needs: the training env's actions so far, the collector's carrier, the eval RNG.

    Examples:
        >>> log = CollectionLog()
        >>> log.record(TensorDict({"action": torch.ones(4, 2)}, [4]))
        >>> log.actions().shape
        torch.Size([4, 2])
    """

    def __init__(self, actions: torch.Tensor | None = None):
        self._chunks: list[torch.Tensor] = [] if actions is None else [actions]
        self.collector = None  # set by make_collector while it runs

    @classmethod
    def for_run(cls, exact: bool, saved: dict[str, Any] | None, eval_env,
                resumed: bool = False) -> tuple["CollectionLog | None", dict | None]:
        """The log of a run that resumes exactly (``None`` otherwise) and the checkpoint's record it replays; the
        evaluation env gets its saved RNG back. A resumed run whose checkpoint has no record (made with
        ``exact_resume=false`` or by an older version) cannot become exact later: no log.

        Examples:
            >>> CollectionLog.for_run(False, {"actions": torch.zeros(2, 1)}, None)
            (None, None)
            >>> CollectionLog.for_run(True, None, None, resumed=True)
            (None, None)
        """
        if not exact or (resumed and saved is None):
            return None, None
        if saved is not None:
            set_env_rng_state(eval_env, saved["eval_rng"])
        return cls(saved["actions"] if saved else None), saved

    def record(self, batch: TensorDictBase) -> None:
        """Keeps a collected round's actions (one env: ``[T, *action]``)."""
        action = batch.get("action")
        self._chunks.append(action.reshape(-1, *action.shape[batch.ndim:]).detach().cpu())

    def actions(self) -> torch.Tensor:
        return torch.cat(self._chunks) if self._chunks else torch.empty(0)

    def state_dict(self, eval_env) -> dict[str, Any] | None:
        """The record for a checkpoint (``None`` while no collector has run)."""
        if self.collector is None:
            return None
        carrier = self.collector._carrier  # TorchRL keeps the next step's input here; no public accessor
        self._chunks = [self.actions()]
        return {"actions": self._chunks[0], "carrier": carrier.to_dict(), "carrier_shape": list(carrier.batch_size),
                "eval_rng": env_rng_state(eval_env)}

    @staticmethod
    def restore_carrier(collector, env, saved: dict[str, Any]) -> None:
        """Replays the recorded actions on the collector's fresh env and puts the saved carrier back."""
        carrier = replay_actions(env, collector._carrier, saved["actions"])
        restored = TensorDict.from_dict(saved["carrier"], batch_size=saved["carrier_shape"])
        if carrier.device is not None:
            restored = restored.to(carrier.device)
        for key in ("observation", "pixels"):
            if key in restored.keys() and key in carrier.keys() and not torch.equal(restored[key], carrier[key]):
                warnings.warn("the replayed env did not reach the checkpoint's observation (another seed or env, or a "
                              "nondeterministic env): the resume is not exact; it goes on from the replayed env",
                              stacklevel=2)
                collector._carrier = carrier  # consistent with the env; the policy's state starts afresh
                return
        collector._carrier = restored
