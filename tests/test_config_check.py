"""Config validation: every impossible setting fails at once, naming the key and the allowed values."""
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf
from omegaconf.errors import ConfigAttributeError

from torchrl_dreamerxp.training.config_check import ConfigError, validate_config

CONFIGS = str(Path(__file__).resolve().parents[1] / "configs")


def config(*overrides):
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        return compose("train", overrides=list(overrides))


def test_defaults_and_every_method_are_valid():
    for xp in ("none", "prioritized", "intrinsic", "full"):
        validate_config(config(f"xp={xp}"))
    validate_config(config("env=atari/Boxing", "model=size12m"))
    validate_config(config("compile=reduce-overhead", "precision=bfloat16"))


def test_precision_auto_resolves_to_what_the_device_computes_fastest(monkeypatch, tmp_path):
    # the config a run records says which dtype it ran in, never "auto"
    import torchrl_dreamerxp.training.precision as precision

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx512f amx_bf16 amx_tile\n")
    assert precision.cpu_flags(info) == {"fpu", "sse2", "avx512f", "amx_bf16", "amx_tile"}
    assert precision.native_cpu_bfloat16(precision.cpu_flags(info))
    assert precision.cpu_flags(tmp_path / "missing") == set()  # off Linux: no flags, so float32
    monkeypatch.setattr(precision, "cpu_flags", lambda: {"avx512f", "avx512_bf16"})
    cfg = config("precision=auto")
    validate_config(cfg)
    assert cfg.precision == "bfloat16"
    monkeypatch.setattr(precision, "cpu_flags", lambda: {"avx2", "avx512f"})  # bf16 emulated only: no gain
    cfg = config("precision=auto")
    validate_config(cfg)
    assert cfg.precision == "float32"
    cfg = config("precision=bfloat16")  # an explicit value is kept
    validate_config(cfg)
    assert cfg.precision == "bfloat16"


def test_build_learner_resolves_precision_auto_for_its_device(monkeypatch):
    # a config that never went through validate_config (someone's own pipeline) still builds with auto
    import torchrl_dreamerxp.training.precision as precision
    from torchrl_dreamerxp.training.agent import EnvShapes, build_learner, build_networks

    configs = Path(__file__).resolve().parents[1] / "configs"
    cfg = OmegaConf.load(configs / "train.yaml")
    cfg.model, cfg.precision = OmegaConf.load(configs / "model" / "tiny.yaml"), "auto"
    monkeypatch.setattr(precision, "cpu_flags", lambda: {"avx512f", "avx512_bf16"})
    networks = build_networks(cfg.model, EnvShapes(4, None, 2, True))
    assert build_learner(cfg, *networks).precision == "bfloat16"
    assert build_learner(cfg, *networks, device="cuda").precision == "float32"  # auto on a GPU: float32
    monkeypatch.setattr(precision, "cpu_flags", lambda: {"avx2"})
    assert build_learner(cfg, *networks).precision == "float32"


# (overrides, the key the message must name, a word of the allowed values)
BAD = [
    (["steps=0"], "steps", ">= 1"),
    (["compile=sometimes"], "compile", "reduce-overhead"),
    (["train_ratio=0"], "train_ratio", "> 0"),
    (["train_ratio=-4"], "train_ratio", "> 0"),
    (["batch_size=0"], "batch_size", ">= 1"),
    (["batch_length=0"], "batch_length", ">= 1"),
    (["replay_size=32"], "replay_size", "batch_length + replay_context"),
    (["replay_context=-1"], "replay_context", ">= 0"),
    (["frames_per_batch=0"], "frames_per_batch", ">= 1"),
    (["checkpoint_every=0"], "checkpoint_every", ">= 1"),
    (["agent.horizon=0"], "agent.horizon", ">= 1"),
    (["agent.lmbda=1.5"], "agent.lmbda", "[0, 1]"),
    (["agent.lr=0"], "agent.lr", "> 0"),
    (["agent.slow_critic_rate=0"], "agent.slow_critic_rate", "(0, 1]"),
    (["agent.return_horizon=1"], "agent.return_horizon", "> 1"),
    (["eval.every=0"], "eval.every", ">= 1"),
    (["eval.episodes=0"], "eval.episodes", ">= 1"),
    (["logger.mode=sometimes"], "logger.mode", "offline, online, disabled, none"),
    (["model.deter=100"], "model.deter", "divisible by model.blocks"),
    (["model.classes=1"], "model.classes", ">= 2"),
    (["xp.name=bogus"], "xp.name", "full, intrinsic, none, prioritized"),
    (["env=gym/NoSuchEnv-v9"], "env", "gymnasium"),
    (["env=foo/bar"], "env", "gym, atari, dmc, dmc_proprio"),
    (["env=atari/NotAGame"], "env", "Atari"),
    (["env=dmc/cup_throw"], "env", "DMC"),
    (["xp=intrinsic", "xp.ensemble.members=1"], "xp.ensemble.members", ">= 2"),
    (["xp=intrinsic", "xp.window=0"], "xp.window", ">= 1"),
    (["xp=intrinsic", "xp.ensemble.mode=big"], "xp.ensemble.mode", "latent or reward"),
    (["xp=intrinsic", "xp.scheduler.name=cosine"], "xp.scheduler.name", "exponential"),
    (["xp=intrinsic", "xp.scheduler.exponential.lam_start=1.5"], "xp.scheduler.exponential", "[0, 1]"),
    (["xp=full", "xp.scheduler.name=return_average", "xp.scheduler.return_average.lam_max=2"],
     "xp.scheduler.return_average", "[0, 1]"),
    (["xp=prioritized", "xp.replay.uniform_fraction=2"], "xp.replay.uniform_fraction", "[0, 1]"),
    (["xp=prioritized", "xp.replay.alpha=0"], "xp.replay.alpha", "> 0"),
    (["prefill=10"], "prefill", "batch_length + replay_context"),
    (["xp=intrinsic", "xp.name=full"], "xp.name", "does not match"),
    (["envs=0"], "envs", ">= 1"),
    (["envs=3", "frames_per_batch=16"], "frames_per_batch", "multiple of envs=3"),
    (["xp=prioritized", "xp.replay.score=best"], "xp.replay.score", "xp, curious, uniform"),
    (["xp=prioritized", "xp.replay.score=curious", "xp.replay.curious.beta=2"], "xp.replay.curious", "0 < beta <= 1"),
    (["xp=prioritized", "+xp.replay.xp.lambda_q=1"], "xp.replay.xp", "lambda_q"),
    (["collector.backend=spark"], "collector.backend", "local or ray"),
    (["collector.workers=0"], "collector.workers", ">= 1"),
    (["collector.backend=ray", "collector.workers=3"], "collector.backend=ray", "multiple of collector.workers"),
    (["collector.backend=ray", "envs=2"], "collector.backend=ray", "envs must be 1"),
    (["precision=float16"], "precision", "float32, bfloat16 or auto"),
    (["prefill=2000", "steps=1000"], "steps", "past prefill"),
    (["batch_length=2000", "prefill=2500", "steps=1000", "replay_size=100000"], "steps", "past prefill"),
    (["frames_per_batch=5000", "steps=2000"], "steps", "one round of frames_per_batch"),
    (["replay_size=500"], "replay_size", "one batch, batch_size × (batch_length + replay_context)"),
    (["seed=-1"], "seed", "[0, 2147483647]"),
    (["seed=18446744073709551617"], "seed", "[0, 2147483647]"),
    (["device=cpux"], "device", "cpu, cuda or cuda:<index>"),
    (["device=mps"], "device", "cpu, cuda or cuda:<index>"),
    (["run_dir=/proc/version/run"], "run_dir", "can be created and written"),
    (["max_loss=0"], "max_loss", "> 0"),
]


@pytest.mark.parametrize("overrides, key, allowed", BAD, ids=[" ".join(o) for o, _, _ in BAD])
def test_bad_values_name_the_key_and_the_allowed_values(overrides, key, allowed):
    with pytest.raises(ConfigError) as err:
        validate_config(config(*overrides))
    line = next(line for line in str(err.value).splitlines() if line.strip().startswith(key))
    assert allowed in line, line


# wrong types: hydra refuses them while composing, from the schema (config_schema.py), naming the key
TYPE_ERRORS = [("steps=abc", "steps", "Integer"), ("seed=1.5", "seed", "Integer"), ("resume=maybe", "resume", "bool"),
               ("agent.lr=fast", "agent.lr", "Float")]


@pytest.mark.parametrize("override, key, allowed", TYPE_ERRORS, ids=[o for o, _, _ in TYPE_ERRORS])
def test_wrong_types_fail_while_composing_naming_the_key(override, key, allowed):
    with pytest.raises(ConfigCompositionException) as err:
        config(override)
    cause = str(err.value.__cause__)
    assert f"full_key: {key}" in cause and allowed in cause, cause


def test_an_extension_section_is_required_only_with_its_extension():
    cfg = config("xp=none")
    assert cfg.xp.replay is None and cfg.xp.ensemble is None
    validate_config(cfg)
    cfg = config("xp=prioritized")
    cfg.xp.replay = None
    with pytest.raises(ConfigError, match="xp.replay: missing"):
        validate_config(cfg)


def test_a_model_key_nothing_reads_is_rejected():
    with pytest.raises(ConfigError, match="model.foo: unknown key"):
        validate_config(config("+model.foo=1"))


def test_unknown_keys_are_rejected():
    with pytest.raises(ConfigCompositionException, match="stepz"):
        config("stepz=10")  # on the command line hydra refuses it
    with pytest.raises(ConfigAttributeError, match="horizn"):
        config().agent.horizn = 3  # in code the schema refuses it
    cfg = OmegaConf.create(OmegaConf.to_container(config()))  # a plain copy, without the schema
    cfg.stepz, cfg.agent.horizn = 10, 3
    with pytest.raises(ConfigError) as err:
        validate_config(cfg)
    assert "stepz: unknown key (known:" in str(err.value) and "agent.horizn: unknown key" in str(err.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu():
    with pytest.raises(ConfigError, match="device='cuda'"):
        validate_config(config("device=cuda"))


def test_all_problems_are_listed_at_once():
    with pytest.raises(ConfigError) as err:
        validate_config(config("steps=0", "agent.horizon=0", "batch_size=0"))
    assert len(str(err.value).splitlines()) == 4  # the header and one line each


@pytest.mark.parametrize("env,family,model,train_ratio", [
    ("gym/CartPole-v1", "gym", "vector_small", 256),
    ("gym/Pendulum-v1", "gym", "vector_small", 256),
    ("dmc_proprio/walker_stand", "dmc_proprio", "vector_small", 512),
    ("dmc/cup_catch", "dmc_vision", "size12m", 512),
    ("atari/Boxing", "atari100k", "size12m", 256),
])
def test_the_env_family_picks_model_train_ratio_and_envs(env, family, model, train_ratio):
    cfg = config(f"env={env}")
    assert cfg.model.name == "family" and cfg.train_ratio is None  # left to the family until checked
    validate_config(cfg, check_env=False)
    assert (cfg.family, cfg.model.name, cfg.train_ratio, cfg.envs) == (family, model, train_ratio, 1)
    assert cfg.agent.lr == cfg.model.lr  # the preset's learning rate follows the family's model


def test_the_command_line_wins_over_the_family():
    cfg = config("env=dmc_proprio/walker_stand", "model=tiny", "train_ratio=16", "envs=2", "frames_per_batch=16")
    validate_config(cfg, check_env=False)
    assert (cfg.family, cfg.model.name, cfg.train_ratio, cfg.envs) == ("dmc_proprio", "tiny", 16, 2)
    # a model key alone tweaks the family's preset
    cfg = config("env=dmc_proprio/walker_stand", "model.units=64")
    validate_config(cfg, check_env=False)
    assert (cfg.model.name, cfg.model.units, cfg.model.deter, cfg.agent.lr) == ("vector_small", 64, 256, 3e-4)


def test_every_env_family_has_a_preset_naming_a_model_that_exists():
    from torchrl_dreamerxp.envs import FAMILIES
    from torchrl_dreamerxp.training.presets import FAMILY_PRESETS

    assert set(FAMILY_PRESETS) == set(FAMILIES)
    for name in FAMILY_PRESETS.values():
        preset = OmegaConf.load(Path(CONFIGS) / "family" / f"{name}.yaml")
        assert (Path(CONFIGS) / "model" / f"{preset.model}.yaml").exists(), name
        assert preset.train_ratio > 0 and preset.envs >= 1
