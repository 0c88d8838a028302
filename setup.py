from setuptools import find_packages, setup

setup(
    name="torchrl_dreamerxp",
    version="0.1.0",
    description="DreamerV3-XP (prioritized trajectory replay, latent reward disagreement) as TorchRL components",
    packages=find_packages(include=["torchrl_dreamerxp", "torchrl_dreamerxp.*"]),
    python_requires=">=3.11",
    install_requires=[
        "torch==2.14.1",
        "torchrl==0.14.1",
        "tensordict==0.14.3",
        "gymnasium==1.4.0",
        "hydra-core==1.3.8",
        "wandb==0.31.0",
        "matplotlib",
        "tqdm",
        "rich",
    ],
    extras_require={
        "atari": ["ale-py==0.12.1", "opencv-python-headless"],
        "dmc": ["dm-control==1.0.50", "mujoco==3.17.0"],
        "ray": ["ray==2.60.0"],
        "dev": ["pytest", "moviepy", "imageio", "rliable==1.2.0", "arch==7.2.0", "pandas==2.3.3"],
    },
)
