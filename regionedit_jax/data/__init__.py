"""Bundled offline sample photos and their editing instructions."""

from regionedit_jax.data.samples import Instruction, Sample, load_image, load_samples

__all__ = ["Instruction", "Sample", "load_image", "load_samples"]
