"""Install regionedit_jax: instruction-driven image editing with learnable edit regions."""

from setuptools import find_packages, setup

# Lower bounds: installing next to a newer JAX (a GPU image, a TPU VM) keeps that JAX. The towers are the
# project's own Flax modules (regionedit_jax/nn) and the tokenizers are built with the tokenizers library,
# so neither transformers nor diffusers is needed at run time.
JAX = "0.10.2"

INSTALL_REQUIRES = [
    # The JAX stack.
    f"jax>={JAX}",
    f"jaxlib>={JAX}",
    "flax>=0.12.8",
    "optax>=0.2.8",
    "orbax-checkpoint>=0.12.8",
    "chex>=0.1.92",
    "ml-collections>=1.1.0",
    # Model files: hub downloads, safetensors weights, the tokenizers.
    "huggingface-hub>=1.0",
    "safetensors>=0.8.0",
    "tokenizers>=0.22.2",
    "sentencepiece>=0.2",  # reads spiece.model (older T5 folders)
    "protobuf>=5",
    # The real CLIP BPE vocabulary for the offline tiny towers (a torch-free sdist).
    "openai-clip==1.0.1",
    # Data and images.
    "grain>=0.2.18",
    "tensorboardX>=2.6.5",  # TensorBoard event files without TensorFlow
    "tensorflow-datasets>=4.9.10",  # tfds.data_source readers only: no TensorFlow needed
    "datasets>=4.8.5",
    "numpy>=2.4,<3",
    "pillow>=12.0",  # gradio 6 asks for < 13
    "scikit-image",
    "scikit-learn",
    "matplotlib",
    "tqdm",
]

EXTRAS_REQUIRE = {
    "gpu": [f"jax[cuda13]>={JAX}"],  # NVIDIA driver >= 580
    "gpu-cuda12": [f"jax[cuda12]>={JAX}"],  # older drivers
    "tpu": [f"jax[tpu]>={JAX}"],
    # The web demo (launch/serve.py).
    "demo": ["gradio>=6.31,<7"],
    # transformers is the tests' independent reference for tokenizers and config defaults; the demo
    # is tested through gradio_client, and the notebook is executed with nbclient.
    "test": [
        "pytest>=9,<10",
        "ruff==0.17.6",
        "transformers>=5.25,<6",
        "gradio>=6.31,<7",
        "nbclient>=0.10",
        "ipykernel>=6",
        "nbformat>=5",
        "selenium>=4.20",
    ],
    # Only for tests/make_torch_reference.py, which writes the committed reference outputs.
    "reference": ["torch==2.13.0", "transformers>=5.25,<6", "diffusers>=0.42.1"],
}

setup(
    name="regionedit_jax",
    version="0.1.0",
    description="Instruction-driven image editing with learnable edit regions, in JAX/Flax.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=find_packages(include=["regionedit_jax", "regionedit_jax.*"]) + ["regionedit_jax.towers.assets"],
    include_package_data=True,
    package_data={"regionedit_jax.towers.assets": ["*.txt"], "regionedit_jax.data": ["samples.jsonl", "SAMPLES.md"]},
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
)
