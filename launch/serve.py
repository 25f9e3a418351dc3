"""A web demo: upload or pick a photo, type an instruction, see the region and the edit.

  python launch/serve.py                                   # the tiny bundle, offline
  python launch/serve.py --config=configs/laion5m.py --checkpoint WORKDIR/checkpoints --port 7860

Serves on 127.0.0.1 only (reach it from elsewhere through an SSH tunnel). Needs gradio:
pip install -e ".[demo]".
"""

import os

from absl import app, flags, logging

from regionedit_jax import cli

_CONFIG = cli.define_config("configs/tiny.py")
_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Trained checkpoint folder (default: random region).")
_PORT = flags.DEFINE_integer("port", 7860, "Port on 127.0.0.1.")
_OUT = flags.DEFINE_string("out", "runs/serve", "Folder for the edited PNGs offered for download.")


@cli.one_line_errors
def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    if not 1024 <= _PORT.value <= 65535:
        raise ValueError(f"--port {_PORT.value}: must be between 1024 and 65535.")
    try:
        import gradio  # noqa: F401
    except ModuleNotFoundError:
        raise ValueError('the web demo needs gradio: pip install -e ".[demo]"') from None
    from regionedit_jax import outputs, serve
    from regionedit_jax.editor import Editor

    outputs.check_folder(_OUT.value, "--out")
    editor = Editor.from_config(_CONFIG.value, checkpoint=_CHECKPOINT.value)
    demo = serve.build_app(serve.EditService(editor, out_dir=_OUT.value))
    print(f"serving on http://127.0.0.1:{_PORT.value} (Ctrl-C stops)")
    demo.launch(
        server_name="127.0.0.1",
        server_port=_PORT.value,
        max_file_size="25mb",
        show_error=True,
        allowed_paths=[os.path.abspath(_OUT.value)],
    )


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
