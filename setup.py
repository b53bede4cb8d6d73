"""motiongrpo_jax: MotionGRPO (EgoAllo + GRPO) in JAX/Flax."""

from setuptools import find_packages, setup

# Aria MPS files and device calibrations through projectaria-tools
# (`data/aria_tools.py`); without it the built-in readers are used.
ARIA = ["projectaria-tools>=2.0"]

setup(
    name="motiongrpo_jax",
    version="0.1.0",
    description=(
        "Egocentric full-body motion from head trajectories: EgoAllo's "
        "diffusion model in JAX/Flax, post-trained with GRPO."
    ),
    python_requires=">=3.11",
    packages=find_packages(include=["motiongrpo_jax", "motiongrpo_jax.*"]),
    # Joint-name presets for the BVH importer.
    package_data={"motiongrpo_jax.data": ["presets/*.json"]},
    install_requires=[
        "jax>=0.10.2",
        "jaxlib>=0.10.2",
        "flax>=0.12.8",
        "optax>=0.2.8",
        "orbax-checkpoint>=0.12.8",
        "chex>=0.1.92",
        "jaxlie>=1.5.0",
        "ml-collections>=1.1.0",
        "absl-py>=2.1",
        "numpy>=1.26",
        "scipy>=1.13",
        "tensorflow-datasets>=4.9.10",
        "array-record>=0.8.6",
        "grain>=0.2.18",
        # TFDS imports it without declaring it (needed when TensorFlow is absent).
        "importlib_resources>=6.0",
        "safetensors>=0.4",
        "h5py>=3.10",
        "pyyaml>=6.0",
        "tensorboardX>=2.6",
        "matplotlib>=3.8",
        "imageio>=2.34",
        # MP4 output of tools/render (an ffmpeg binary in a wheel).
        "imageio-ffmpeg>=0.5",
    ],
    extras_require={
        "aria": ARIA,
        # nbclient, nbformat, ipykernel: the notebooks run headless in the
        # suite; the Aria readers are tested both ways.
        "test": ["pytest>=8.0", "pytest-xdist>=3.5", "nbclient>=0.10",
                 "nbformat>=5.10", "ipykernel>=6.29"] + ARIA,
    },
)
