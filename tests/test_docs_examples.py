"""Every script in docs/examples runs (tiny sizes, a few steps)."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "docs" / "examples"


def run(*args, timeout=300):
    proc = subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_world_model_from_a_torchrl_collector():
    out = run(EXAMPLES / "world_model_from_collector.py", "--steps", "200", "--updates", "20")
    first, last = [float(line.split("loss ")[1].split()[0]) for line in out.splitlines() if line.startswith("update")]
    assert last < first  # the world model learns


def measured(out: str) -> tuple[int, int]:
    line = next(line for line in out.splitlines() if line.startswith("episodes in replay"))
    return int(line.split("replay ")[1].split(",")[0]), int(line.split("measured ")[1].split(";")[0])


def test_dqn_on_serial_env_with_the_xp_sampler_and_transform():
    out = run(EXAMPLES / "dqn_serial_env_cartpole.py", "--frames", "1500")
    episodes, with_delta = measured(out)
    assert episodes > 20 and with_delta > 0  # DQNLoss's td_error reached the trajectories
    lams = [float(line.split("λ = ")[1].split()[0]) for line in out.splitlines() if line.startswith("frames")]
    assert lams and all(0.5 <= lam < 1.0 for lam in lams) and "greedy return" in out


def test_sac_on_pendulum_with_the_xp_sampler_and_transform():
    out = run(EXAMPLES / "sac_pendulum.py", "--frames", "1200")
    episodes, with_delta = measured(out)
    assert episodes == 6 and with_delta > 0 and "policy return" in out


def test_model_based_env_driven_by_the_tensordict_modules():
    out = run(EXAMPLES / "model_based_env.py")
    line = next(line for line in out.splitlines() if line.startswith("imagined"))
    assert line.startswith("imagined (8, 15)") and float(line.split("intrinsic ")[1].split(")")[0]) > 0


def test_intrinsic_reward_transform_with_a_scheduler():
    lines = [line for line in run(EXAMPLES / "intrinsic_reward_transform.py").splitlines() if line.startswith("update")]
    lams = [float(line.split("λ = ")[1].split()[0]) for line in lines]
    assert lams[0] == 0.2 and lams == sorted(lams) and lams[-1] > 0.9


def test_open_loop_video_from_a_checkpoint(tmp_path, fast_overrides):
    run_dir = tmp_path / "boxing"
    run(ROOT / "recipes" / "train.py", *fast_overrides, "env=atari/Boxing", "eval.max_steps=20", "steps=96", "eval.every=96", "checkpoint_every=96",
        f"run_dir={run_dir}")
    gif = tmp_path / "open_loop.gif"
    assert "left real, right imagined" in run(EXAMPLES / "open_loop_video.py", "--run-dir", run_dir, "--out", gif)
    assert gif.read_bytes()[:6] == b"GIF89a"


def test_every_example_is_shown_on_the_documentation_site():
    page = (ROOT / "docs" / "examples.md").read_text()
    nav = (ROOT / "mkdocs.yml").read_text()
    assert "examples.md" in nav
    for script in EXAMPLES.glob("*.py"):
        assert f'--8<-- "docs/examples/{script.name}"' in page, f"{script.name} is not on docs/examples.md"


def test_every_public_class_and_function_has_a_runnable_example():
    # the doctests themselves run in every `make test` (pytest.ini: --doctest-modules)
    import importlib
    import inspect
    import pkgutil

    import torchrl_dreamerxp

    missing = []
    for info in pkgutil.walk_packages(torchrl_dreamerxp.__path__, "torchrl_dreamerxp."):
        module = importlib.import_module(info.name)
        for name in getattr(module, "__all__", []):
            obj = getattr(module, name)
            if (inspect.isclass(obj) or inspect.isfunction(obj)) and obj.__module__ == module.__name__:
                doc = inspect.getdoc(obj) or ""
                if "Examples:" not in doc or ">>>" not in doc:
                    missing.append(f"{module.__name__}.{name}")
    assert not missing, f"public API without an Examples: block: {missing}"
