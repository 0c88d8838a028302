"""Environment factories: ``make_env("<family>/<task>")``.

Families: ``gym`` (gymnasium, vector observations), ``atari`` (Atari100k protocol),
``dmc`` (DeepMind Control, 64x64 pixels) and ``dmc_proprio`` (DeepMind Control,
proprioception). ``ale_py`` and ``dm_control`` are imported only when an env of
their family is built.

Examples:
    >>> from torchrl_dreamerxp.envs import make_env
    >>> env = make_env("gym/CartPole-v1", seed=0)
    >>> sorted(env.observation_spec.keys())
    ['is_first', 'observation']
"""

from .factory import FAMILIES, action_repeat, check_env_name, make_env

__all__ = ["make_env", "check_env_name", "action_repeat", "FAMILIES"]
