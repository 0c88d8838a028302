"""torchrl_dreamerxp: version ranges here; the exact pins checked together are in requirements/base.txt.

The top-level ``configs/`` and ``recipes/`` ship inside the wheel as ``torchrl_dreamerxp.configs`` (package data)
and ``torchrl_dreamerxp.recipes``, so an installed package trains from any directory:
``dreamerxp-train env=gym/CartPole-v1`` or ``python -m torchrl_dreamerxp.recipes.train ...``.
"""
from setuptools import find_packages, setup

setup(
    name="torchrl_dreamerxp",
    version="0.1.0",
    description="DreamerV3-XP (prioritized trajectory replay, latent reward disagreement) as TorchRL components",
    packages=[*find_packages(include=["torchrl_dreamerxp", "torchrl_dreamerxp.*"]),
              "torchrl_dreamerxp.configs", "torchrl_dreamerxp.recipes"],
    package_dir={"torchrl_dreamerxp.configs": "configs", "torchrl_dreamerxp.recipes": "recipes"},
    package_data={"torchrl_dreamerxp.configs": ["*.yaml", "*/*.yaml"]},
    python_requires=">=3.11",
    install_requires=[
        "torch>=2.14,<2.15",  # torchrl 0.14's C++ extension is built against torch 2.14
        "torchrl>=0.14.1,<0.15",
        "tensordict>=0.14.3,<0.15",
        "gymnasium>=1.4,<2",
        "hydra-core>=1.3.8,<1.4",
        "wandb>=0.31,<0.32",
        "matplotlib>=3.9",
        "tqdm>=4.66",
        "rich>=13",
    ],
    extras_require={
        "atari": ["ale-py>=0.12.1,<0.13", "opencv-python-headless>=4.10"],
        "dmc": ["dm-control>=1.0.50,<1.1", "mujoco>=3.17,<4"],  # mujoco 4 breaks dm-control 1.0.50
        "ray": ["ray>=2.60,<3"],
        # the report's statistics and plots: rliable needs arch 7.x (8 breaks its bootstrap) and pandas < 3
        "report": ["rliable>=1.2.0,<1.3", "arch>=7.2,<8", "pandas>=2.3,<3"],
        "video": ["moviepy>=2.2", "imageio>=2.38"],
        "dev": ["pytest>=9", "pytest-xdist>=3", "torchrl_dreamerxp[report,video]"],
    },
    entry_points={"console_scripts": [
        "dreamerxp-train=torchrl_dreamerxp.recipes.train:main",
        "dreamerxp-experiment=torchrl_dreamerxp.recipes.experiment:main",
        "dreamerxp-report=torchrl_dreamerxp.recipes.report:main",
        "dreamerxp-env-tour=torchrl_dreamerxp.recipes.env_tour:main",
    ]},
)
