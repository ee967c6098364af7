"""End to end: after a tiny sweep, the MLflow UI in a real headless browser (Debian's chromium) shows the
parent run, its two child runs and their success-rate metric. `.ci/run` installs chromium and its driver."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="needs Debian's chromium and chromium-driver "
                                "(apt-get install chromium chromium-driver; .ci/run does)")


@pytest.fixture
def mlflow_server(tiny_sweep):
    import socket

    uri, _, folder = tiny_sweep
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("mlflow")), "server", "--backend-store-uri", uri, "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1"],
        cwd=folder, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while True:
            try:
                urllib.request.urlopen(url + "/health", timeout=2)
                break
            except OSError:
                assert server.poll() is None and time.time() < deadline, "mlflow server did not start"
                time.sleep(0.5)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=1800,1000", f"--user-data-dir={tmp_path / 'chromium'}"):
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service(DRIVER), options=opts)


def test_mlflow_ui_shows_parent_children_and_success_rate(mlflow_server, tiny_sweep, tmp_path):
    from mlflow.tracking import MlflowClient
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    uri, _, _ = tiny_sweep
    c = MlflowClient(tracking_uri=uri)
    exp = c.get_experiment_by_name("tiny")
    d = browser(tmp_path)
    try:
        wait = WebDriverWait(d, 60)
        text = lambda: d.find_element(By.TAG_NAME, "body").text  # noqa: E731
        parent = c.search_runs([exp.experiment_id], filter_string="tags.`mlflow.parentRunId` IS NULL")[0]
        d.get(f"{mlflow_server}/#/experiments/{exp.experiment_id}/runs")
        wait.until(lambda _: parent.data.tags["sweep_id"] in text())  # the parent is named by its sweep run
        assert "000-vanilla" not in text()  # children are nested under the parent, collapsed
        d.find_element(By.XPATH, "//*[contains(@class,'ag-row')]//button").click()  # expand the parent
        wait.until(lambda _: "000-vanilla" in text() and "001-attention" in text())
        d.save_screenshot(str(tmp_path / "runs.png"))
        child = c.search_runs([exp.experiment_id], filter_string="tags.trial_key = '000-vanilla'")[0]
        d.get(f"{mlflow_server}/#/experiments/{exp.experiment_id}/runs/{child.info.run_id}")
        wait.until(lambda _: "eval/success_rate" in text() and "train/action_loss" in text())
        # a value that cannot be found by chance (a success rate of 0 would match any "0" on the page)
        value = child.data.metrics["train/action_loss"]
        shown = [f"{value:g}"[:5], str(round(value, 3)), str(round(value, 4)), f"{value:.3f}"]  # however it rounds
        assert value > 0.01 and any(s in text() for s in shown), (value, text()[:3000])
        d.save_screenshot(str(tmp_path / "child.png"))
        d.get(f"{mlflow_server}/#/experiments/{exp.experiment_id}/runs/{parent.info.run_id}")
        wait.until(lambda _: "Smoke test: vanilla vs AttentionTuner" in text())  # the sweep's description
    finally:
        d.quit()
