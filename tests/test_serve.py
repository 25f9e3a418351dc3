"""The web demo, used the way a person uses it: the real Gradio server on loopback, driven by
gradio_client (an edit, a bad upload, two requests at once) and by headless Chromium."""

import concurrent.futures
import os
import shutil
import socket

import numpy as np
import pytest
from PIL import Image

from regionedit_jax import serve

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

gradio_client = pytest.importorskip("gradio_client")
# gradio's queue calls pandas options that pandas 3 deprecates.
pytestmark = [
    pytest.mark.filterwarnings("ignore:'future.no_silent_downcasting' is deprecated"),
    pytest.mark.filterwarnings("ignore:The copy keyword is deprecated"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(editor, tmp_path_factory):
    """(url, service): the app served on 127.0.0.1 for this module."""
    service = serve.EditService(editor, out_dir=str(tmp_path_factory.mktemp("serve")))
    app = serve.build_app(service)
    port = _free_port()
    app.launch(
        server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, allowed_paths=[service.out_dir]
    )
    yield f"http://127.0.0.1:{port}/", service
    app.close()


@pytest.fixture(scope="module")
def client(server):
    return gradio_client.Client(server[0], verbose=False)


@pytest.fixture(scope="module")
def photo_path(tmp_path_factory):
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("photos") / "photo.png"
    Image.fromarray(rng.integers(0, 255, (40, 56, 3), dtype=np.uint8)).save(path)
    return str(path)


def _edit(client, photo, instruction="make the sky purple", seed=0, own=None):
    return client.predict(
        gradio_client.handle_file(photo),
        instruction,
        own,
        4,  # steps
        7.5,  # guidance
        0.5,  # threshold
        seed,
        api_name="/edit",
    )


def test_an_edit_returns_the_picture_region_and_file(client, photo_path):
    edited, overlay, probability, download, details = _edit(client, photo_path)
    source = np.asarray(Image.open(photo_path))
    for path in (edited, overlay, probability, download):
        assert np.asarray(Image.open(path)).shape == source.shape  # at the upload's size
    assert details["instruction"] == "make the sky purple" and details["region"] == "predicted"
    assert details["target caption"] and 0.0 <= details["repainted share"] <= 1.0
    np.testing.assert_array_equal(np.asarray(Image.open(download)), np.asarray(Image.open(edited).convert("RGB")))


def test_same_seed_same_edit_and_outside_the_region_kept(client, photo_path, editor):
    first = np.asarray(Image.open(_edit(client, photo_path, seed=3)[0]).convert("RGB"))
    again = np.asarray(Image.open(_edit(client, photo_path, seed=3)[0]).convert("RGB"))
    np.testing.assert_array_equal(first, again)
    direct = editor.edit(photo_path, "make the sky purple", seed=3, num_steps=4, guidance_scale=7.5, threshold=0.5)
    np.testing.assert_array_equal(first, direct.image)


def test_bad_upload_and_bad_instruction_are_one_line_messages(client, photo_path, tmp_path):
    corrupt = tmp_path / "broken.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    with pytest.raises(gradio_client.exceptions.AppError) as error:
        _edit(client, str(corrupt))
    assert "image 'broken.png' cannot be decoded (not a known image format)" in str(error.value)
    with pytest.raises(gradio_client.exceptions.AppError, match="instruction 0 is empty"):
        _edit(client, photo_path, instruction="   ")
    assert _edit(client, photo_path)[4]["region"] == "predicted"  # the server is still there


def test_two_requests_at_once_both_finish(server, photo_path):
    def one(seed):
        return _edit(gradio_client.Client(server[0], verbose=False), photo_path, seed=seed)

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        results = list(pool.map(one, [1, 2]))
    assert all(r[4]["region"] == "predicted" for r in results)
    a, b = (np.asarray(Image.open(r[0]).convert("RGB")) for r in results)
    assert a.shape == b.shape


def test_the_service_keeps_only_the_newest_files(editor, photo_path, tmp_path):
    service = serve.EditService(editor, out_dir=str(tmp_path / "out"), keep=2)
    for seed in range(4):
        *_, path, details = service.edit(photo_path, "add a hat", None, 4, 7.5, 0.5, seed)
    assert sorted(os.listdir(tmp_path / "out")) == ["edited_000003.png", "edited_000004.png"]
    assert os.path.basename(path) == "edited_000004.png" and details["region"] == "predicted"
    with pytest.raises(ValueError, match="no photo"):
        service.edit(None, "add a hat", None, 4, 7.5, 0.5, 0)
    with pytest.raises(ValueError, match="--steps 0"):
        service.edit(photo_path, "add a hat", None, 0, 7.5, 0.5, 0)


def test_painted_region_is_the_mask():
    layer = np.zeros((10, 12, 4), np.uint8)
    layer[2:5, 3:7, 3] = 255
    mask = serve.painted_region({"background": None, "layers": [layer], "composite": None}, (20, 24))
    assert mask.shape == (20, 24) and mask[4:10, 6:14].all() and mask.sum() == 6 * 8
    assert serve.painted_region({"layers": [np.zeros((10, 12, 4), np.uint8)]}, (10, 12)) is None
    assert serve.painted_region(None, (10, 12)) is None


ARTIFACTS = os.environ.get("REGIONEDIT_TEST_ARTIFACTS", os.path.join(ROOT, "runs", "test-artifacts"))


def test_in_headless_chromium(server, photo_path):
    """Load the page, upload a photo, type, press Edit, wait for the edited image; keep a screenshot."""
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    browser, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not (browser and driver_path):
        pytest.skip("headless Chromium is not installed: apt-get install chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,2000"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver_path))
    try:
        driver.get(server[0])
        wait = WebDriverWait(driver, 120)
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#photo input[type=file]"))).send_keys(photo_path)
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#preview img")))
        driver.find_element(By.CSS_SELECTOR, "#instruction textarea").send_keys("make the sky purple")
        driver.find_element(By.CSS_SELECTOR, "#edit").click()
        edited = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#edited img")))
        assert edited.get_attribute("src")
        wait.until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, "#details"), "predicted"))
        os.makedirs(ARTIFACTS, exist_ok=True)
        driver.save_screenshot(os.path.join(ARTIFACTS, "serve_edit.png"))
    finally:
        driver.quit()
    assert os.path.getsize(os.path.join(ARTIFACTS, "serve_edit.png")) > 10_000
