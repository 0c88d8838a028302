"""Pure tensor math of DreamerV3 and its XP extensions: no modules, no state.

Every function states its formula in its docstring; ``tests/test_functional.py`` pins each one on
hand-computed values.
"""
from __future__ import annotations

import torch

__all__ = [
    "symlog",
    "symexp",
    "symexp_bins",
    "two_hot_encode",
    "two_hot_decode",
    "lambda_returns",
    "trajectory_priority",
    "intrinsic_reward",
    "mix_rewards",
]


def symlog(x: torch.Tensor) -> torch.Tensor:
    """``symlog(x) = sign(x) * log(1 + |x|)``.

    Examples:
        >>> symlog(torch.tensor([0.0, 1.0, -1.0]))
        tensor([ 0.0000,  0.6931, -0.6931])
    """
    return torch.sign(x) * torch.log1p(x.abs())


def symexp(x: torch.Tensor) -> torch.Tensor:
    """``symexp(x) = sign(x) * (exp(|x|) - 1)``, the inverse of :func:`symlog`.

    Examples:
        >>> symexp(symlog(torch.tensor([-5.0, 3.0])))
        tensor([-5.,  3.])
    """
    return torch.sign(x) * torch.expm1(x.abs())


def symexp_bins(num_bins: int = 255, low: float = -20.0, high: float = 20.0) -> torch.Tensor:
    """The official DreamerV3 two-hot bins: ``symexp(linspace(low, high, num_bins))``.

    Built from one half and mirrored so the bins are exactly symmetric around 0 (as in
    ``embodied/jax/heads.py``), which makes a uniform distribution decode to exactly 0.

    Examples:
        >>> symexp_bins(5, -1.0, 1.0)
        tensor([-1.7183, -0.6487,  0.0000,  0.6487,  1.7183])
    """
    if num_bins % 2 == 1 and low == -high:
        half = symexp(torch.linspace(low, 0.0, (num_bins - 1) // 2 + 1, dtype=torch.float64))
        return torch.cat([half, -half[:-1].flip(0)]).float()
    return symexp(torch.linspace(low, high, num_bins, dtype=torch.float64)).float()


def two_hot_encode(x: torch.Tensor, bins: torch.Tensor) -> torch.Tensor:
    """Two-hot encoding of ``x`` over sorted ``bins`` (in the space of ``x``; no transform).

    For ``bins[k] <= x < bins[k+1]`` the weight ``(bins[k+1] - x) / (bins[k+1] - bins[k])`` goes to
    bin ``k`` and the rest to ``k+1``; a value on a bin puts 1 on it. Values outside the range put
    all weight on the nearest end bin.

    Args:
        x: values of any shape ``[...]``.
        bins: 1-D increasing tensor ``[N]``.

    Returns:
        ``[..., N]`` weights that sum to 1 and satisfy ``(weights * bins).sum(-1) == clip(x)``.

    Examples:
        >>> two_hot_encode(torch.tensor([1.5]), torch.tensor([0.0, 1.0, 2.0]))
        tensor([[0.0000, 0.5000, 0.5000]])
    """
    bins = bins.to(x)
    n = bins.shape[0]
    x = x.clamp(bins[0], bins[-1])
    # index of the last bin <= x, kept one below the top so k+1 exists
    below = (torch.searchsorted(bins, x.contiguous(), right=True) - 1).clamp(0, n - 2)
    lo, hi = bins[below], bins[below + 1]
    w_hi = ((x - lo) / (hi - lo)).clamp(0.0, 1.0)
    out = torch.zeros(*x.shape, n, dtype=x.dtype, device=x.device)
    out.scatter_(-1, below.unsqueeze(-1), (1.0 - w_hi).unsqueeze(-1))
    out.scatter_add_(-1, (below + 1).unsqueeze(-1), w_hi.unsqueeze(-1))
    return out


def two_hot_decode(logits: torch.Tensor, bins: torch.Tensor) -> torch.Tensor:
    """Expected value ``sum_k softmax(logits)_k * bins_k`` of a two-hot distribution.

    For an odd number of symmetric bins the sum is taken symmetrically around the centre bin
    (as the official code does) so uniform probabilities decode to exactly 0, which keeps
    zero-initialised reward and value heads at exactly 0.

    Examples:
        >>> two_hot_decode(torch.zeros(3), torch.tensor([-1.0, 0.0, 1.0]))
        tensor(0.)
        >>> two_hot_decode(torch.tensor([0.0, 0.0, 100.0]), torch.tensor([-1.0, 0.0, 1.0]))
        tensor(1.)
    """
    probs = torch.softmax(logits.float(), -1)  # float32 also for bfloat16 logits
    bins = bins.to(probs)
    n = bins.shape[0]
    if n % 2 == 1:
        m = (n - 1) // 2
        left = (probs[..., :m] * bins[:m]).flip(-1)
        right = probs[..., m + 1 :] * bins[m + 1 :]
        return probs[..., m] * bins[m] + (left + right).sum(-1)
    return (probs * bins).sum(-1)


def lambda_returns(
    reward: torch.Tensor,
    value: torch.Tensor,
    cont: torch.Tensor,
    bootstrap: torch.Tensor,
    gamma: float = 1.0 - 1.0 / 333.0,
    lmbda: float = 0.95,
) -> torch.Tensor:
    """TD(λ) returns along the last dimension (time).

    With ``reward[t] = r_{t+1}`` (reward of the step from s_t to s_{t+1}), ``value[t] = V(s_{t+1})``,
    ``cont[t] = c_{t+1}`` (0 where s_{t+1} is terminal, or a continue probability) and ``G_T`` the
    bootstrap::

        G_t = r_{t+1} + γ·c_{t+1}·((1 − λ)·V(s_{t+1}) + λ·G_{t+1}),    G_T = bootstrap

    DreamerV3 imagination passes the continue head's output, which already includes the discount
    (``contdisc``), with ``gamma=1``; the replay value loss passes ``1 - is_terminal`` and
    ``gamma = 1 - 1/333``.

    Args:
        reward: ``[..., T]``.
        value: ``[..., T]``.
        cont: ``[..., T]``.
        bootstrap: ``[...]``, usually ``value[..., -1]``.
        gamma: discount factor.
        lmbda: λ of TD(λ), a float or a ``[..., T]`` tensor (the replay value loss passes
            ``λ·(1 − is_last)`` to cut the recursion at episode boundaries).

    Returns:
        ``[..., T]`` returns ``G_0 … G_{T-1}``.

    Examples:
        >>> lambda_returns(torch.tensor([1.0, 1.0]), torch.tensor([0.0, 0.0]),
        ...                torch.tensor([1.0, 1.0]), torch.tensor(0.0), gamma=1.0, lmbda=1.0)
        tensor([2., 1.])
    """
    if not (reward.shape == value.shape == cont.shape):
        raise ValueError(f"reward, value, cont shapes differ: {reward.shape}, {value.shape}, {cont.shape}")
    disc = gamma * cont
    lmbda = torch.as_tensor(lmbda, dtype=reward.dtype, device=reward.device).expand_as(reward)
    # G_t = interm_t + disc_t·λ_t·G_{t+1}: the λ-free part is computed for all t at once
    interm = reward + disc * (1.0 - lmbda) * value
    decay = disc * lmbda
    out = []
    last = bootstrap
    for t in range(reward.shape[-1] - 1, -1, -1):
        last = interm[..., t] + decay[..., t] * last
        out.append(last)
    return torch.stack(out[::-1], -1)


def trajectory_priority(
    returns: torch.Tensor,
    recon_error: torch.Tensor,
    value_error: torch.Tensor,
    lambda_r: float = 0.1,
    lambda_delta: float = 0.4,
    lambda_eps: float = 0.5,
) -> torch.Tensor:
    """DreamerV3-XP trajectory score ``s = (λ_r + λ_δ·δ)·R + λ_ε·ε``, elementwise.

    ``R`` is the trajectory's task return, ``ε`` its reconstruction error and ``δ`` its critic value
    error. No normalization here: the sampler normalizes before calling it.

    Examples:
        >>> trajectory_priority(torch.tensor([2.0]), torch.tensor([1.0]), torch.tensor([0.5]))
        tensor([1.1000])
    """
    return (lambda_r + lambda_delta * value_error) * returns + lambda_eps * recon_error


def intrinsic_reward(reward_preds: torch.Tensor, window: int, ends: torch.Tensor | None = None) -> torch.Tensor:
    """Latent reward disagreement: ensemble mean plus variance, averaged over a forward window.

    With ``reward_preds`` of shape ``[K, ..., H]`` (K members, H steps, time last)::

        r̄_t = mean_k r̂_{k,t}
        v_t = (1/K)·Σ_k (r̂_{k,t} − r̄_t)²          (population variance)
        u_t = r̄_t + v_t
        r_intr_t = mean(u_t, …, u_{e−1}),  e = min(t + window, H, first end after t + 1)

    The window is cut at the horizon and after the first step ``t' ≥ t`` with ``ends[..., t']`` (the last
    step of an episode), and divided by the number of terms actually summed. (The XP README writes
    Σ_{t'=t}^{t+L} with 1/L in front, i.e. L+1 terms over L; it is read here as the mean over an L-step window.)

    Args:
        reward_preds: ``[K, ..., H]``.
        window: steps averaged (≥ 1).
        ends: optional ``[..., H]`` booleans, True on an episode's last step.

    Returns:
        ``[..., H]``.

    Examples:
        >>> intrinsic_reward(torch.tensor([[0.0, 2.0], [2.0, 2.0]]), window=1)
        tensor([2., 2.])
        >>> preds = torch.tensor([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])  # no disagreement: u = r̄
        >>> intrinsic_reward(preds, window=3), intrinsic_reward(preds, 3, ends=torch.tensor([True, False, False]))
        (tensor([2.0000, 2.5000, 3.0000]), tensor([1.0000, 2.5000, 3.0000]))
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    if reward_preds.dim() < 2 or reward_preds.shape[0] < 2:
        raise ValueError(f"reward_preds must be [K>=2, ..., H], got shape {tuple(reward_preds.shape)}")
    mean = reward_preds.mean(0)
    var = reward_preds.var(0, unbiased=False)
    u = mean + var
    horizon = u.shape[-1]
    if ends is None:
        csum = torch.nn.functional.pad(u.cumsum(-1), (1, 0))
        t = torch.arange(horizon, device=u.device)
        end = (t + window).clamp(max=horizon)
        return (csum[..., end] - csum[..., t]) / (end - t).to(u.dtype)
    if ends.shape != u.shape:
        raise ValueError(f"ends must be shaped like the steps {tuple(u.shape)}, got {tuple(ends.shape)}")
    ends = ends.bool()
    episode = ends.long().cumsum(-1) - ends.long()  # episodes ended before each step
    total, count = torch.zeros_like(u), torch.zeros_like(u)
    for k in range(min(window, horizon)):  # the window is short: one shifted sum per offset
        same = (episode[..., k:] == episode[..., : horizon - k]).to(u.dtype)
        total[..., : horizon - k] += u[..., k:] * same
        count[..., : horizon - k] += same
    return total / count


def mix_rewards(r_ext: torch.Tensor, r_intr: torch.Tensor, lam: float | torch.Tensor) -> torch.Tensor:
    """``r = λ·r_ext + (1 − λ)·r_intr``: λ is the EXTRINSIC weight.

    Examples:
        >>> mix_rewards(torch.tensor(1.0), torch.tensor(3.0), 0.25)
        tensor(2.5000)
    """
    return lam * r_ext + (1.0 - lam) * r_intr
