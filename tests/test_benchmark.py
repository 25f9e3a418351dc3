"""The tower benchmark runs end to end on the tiny bundle and writes its pictures."""

import os

from PIL import Image

from regionedit_jax import benchmark


def test_benchmark_runs_offline(tiny_bundle, tmp_path, capsys):
    import importlib.util

    path = os.path.join(os.path.dirname(__file__), "..", "configs", "tiny.py")
    spec = importlib.util.spec_from_file_location("tiny_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config(f"bundle={tiny_bundle}")
    result = benchmark.run(config, str(tmp_path), sample_id="cat")
    out = capsys.readouterr().out
    assert "generator sd_inpaint (4 steps)" in out and "tabby cat" in out
    assert -1 <= result["cos"] <= 1
    picture = Image.open(tmp_path / "demo.png")
    assert picture.size[0] == 2 * picture.size[1]
