"""Install regionedit_jax: instruction-driven image editing with learnable edit regions."""

from setuptools import find_packages, setup

JAX_VERSION = "0.9.2"

INSTALL_REQUIRES = [
    # The JAX stack. The towers are the project's own modules (regionedit_jax/nn); these pins stay
    # until the sampler's parity test stops building diffusers' Flax pipeline as its reference and
    # the suite has run on a newer JAX (flax 0.12.7+ needs jax >= 0.10).
    f"jax=={JAX_VERSION}",
    f"jaxlib=={JAX_VERSION}",
    "flax==0.12.6",
    "optax==0.2.8",
    "orbax-checkpoint==0.12.8",
    "chex==0.1.92",
    "ml-collections==1.1.0",
    # Tokenizers and config writers (transformers); diffusers' Flax pipeline is the sampler's
    # reference in the tests. Both are the last releases with Flax classes.
    "transformers==4.57.6",
    "diffusers==0.39.0",
    "huggingface-hub==0.36.2",
    "tokenizers==0.22.2",
    "safetensors==0.8.0",
    "sentencepiece",
    "protobuf",
    # The real CLIP BPE vocabulary for the offline tiny towers (a torch-free sdist).
    "openai-clip==1.0.1",
    # Data and images.
    "grain==0.2.18",
    "tensorboardX==2.6.5",  # TensorBoard event files without TensorFlow
    "tensorflow-datasets==4.9.10",  # tfds.data_source readers only: no TensorFlow needed
    "datasets==4.8.5",  # 5.x needs huggingface-hub >= 1.0, which transformers 4.57 refuses
    "numpy==2.4.6",
    "pillow==13.0.0",
    "scikit-image",
    "scikit-learn",
    "matplotlib",
    "tqdm",
]

EXTRAS_REQUIRE = {
    "gpu": [f"jax[cuda12]=={JAX_VERSION}"],
    "tpu": [f"jax[tpu]=={JAX_VERSION}"],
    "test": ["pytest>=9,<10", "ruff==0.17.6"],
    # Only for tests/make_torch_reference.py, which writes the committed reference outputs.
    "reference": ["torch==2.13.0"],
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
