"""The pack in the real browser UI: the host's server, its page in headless Chromium (Debian's
chromium + chromium-driver, driven by Selenium), every workflow file loaded as a drop loads it."""
import json
import os
import shutil
import time
import urllib.request
from pathlib import Path

import pytest

from consistory_run.example_workflows import STORY
from consistory_run.host import comfyui_path
from consistory_testing.server import get_json, running_server

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((REPO / "example_workflows").glob("*.json"))
README_SCREENSHOT = REPO / "docs" / "story_graph.png"  # refreshed with CONSISTORY_UPDATE_SCREENSHOT=1


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and driver_path, "install Debian's chromium and chromium-driver (scripts/setup.sh does)"
    base = tmp_path_factory.mktemp("comfy_ui")
    with running_server(base) as url:
        options = webdriver.ChromeOptions()
        options.binary_location = chromium
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--no-first-run", "--disable-quic", "--window-size=1260,1600",
                    f"--user-data-dir={base / 'chromium'}"):
            options.add_argument(arg)
        driver = webdriver.Chrome(service=Service(driver_path), options=options)
        try:
            driver.set_script_timeout(60)
            if "--base-directory" in (comfyui_path() / "comfy" / "cli_args.py").read_text():
                # today's frontend opens its template browser over the graph until the tutorial is done
                # (and its minimap covers the graph's corner)
                for setting, value in (("Comfy.TutorialCompleted", b"true"), ("Comfy.Minimap.Visible", b"false")):
                    request = urllib.request.Request(f"{url}/settings/{setting}", value,
                                                     {"Content-Type": "application/json"})
                    urllib.request.urlopen(request, timeout=30).close()
            driver.get(url)
            deadline = time.monotonic() + 300
            while not driver.execute_script("return !!(window.app && window.app.graph && window.LiteGraph)"):
                assert time.monotonic() < deadline, "the ComfyUI page did not start"
                time.sleep(0.5)
            yield driver, url
        finally:
            driver.quit()


LOAD = """
const workflow = arguments[0];
const done = arguments[arguments.length - 1];
const missing = workflow.nodes.map(n => n.type).filter(t => !(t in LiteGraph.registered_node_types));
Promise.resolve(app.loadGraphData(workflow)).then(() => {
  const nodes = app.graph._nodes;
  done({missing, loaded: nodes.length,
        widgets: nodes.filter(n => n.type.startsWith("ConsiStory")).map(
          n => [n.type, (n.widgets || []).map(w => w.value)])});
}).catch(e => done({error: String(e)}));
"""


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_every_workflow_loads_with_every_node_known(page, path):
    driver, _ = page
    workflow = json.loads(path.read_text())
    result = driver.execute_async_script(LOAD, workflow)
    assert "error" not in result, result
    assert result["missing"] == [], f"the page does not know {result['missing']}"
    assert result["loaded"] == len(workflow["nodes"])
    by_id = {n["id"]: n for n in workflow["nodes"] if n["type"].startswith("ConsiStory")}
    assert sorted(t for t, _ in result["widgets"]) == sorted(n["type"] for n in by_id.values())


def test_consistory_widgets_show_their_defaults(page):
    driver, url = page
    info = get_json(url + "/object_info")
    names = [n for n in info if n.startswith("ConsiStory") and info[n]["category"].split("/")[0] == "ConsiStory" and "testing" not in info[n]["category"]]
    shown = driver.execute_script("""
      const out = {};
      for (const type of arguments[0]) {
        const node = LiteGraph.createNode(type);
        out[type] = Object.fromEntries((node.widgets || []).map(w => [w.name, w.value]));
      }
      return out;""", names)
    for name in names:
        for section in ("required", "optional"):
            for input_name, spec in info[name]["input"].get(section, {}).items():
                kind, options = spec[0], spec[1] if len(spec) > 1 else {}
                if isinstance(kind, list):
                    expected = options.get("default", kind[0] if kind else None)
                elif kind in ("INT", "FLOAT", "STRING", "BOOLEAN"):
                    expected = options.get("default")
                else:
                    continue
                if expected is None:
                    continue
                assert input_name in shown[name], f"{name}.{input_name} has no widget"
                assert shown[name][input_name] == pytest.approx(expected) if kind == "FLOAT" else \
                    shown[name][input_name] == expected, (name, input_name, shown[name][input_name], expected)


def test_screenshot_of_the_story_graph(page, tmp_path):
    driver, _ = page
    workflow = json.loads((REPO / "example_workflows" / f"{STORY}.json").read_text())
    driver.execute_async_script(LOAD, workflow)
    driver.execute_script("""
      // today's frontend announces its news in a banner over the top bar: hide the banner only
      const texts = [...document.querySelectorAll("*")].filter(el => /^Introducing/.test((el.textContent || "").trim()));
      let banner = texts[texts.length - 1];
      while (banner && banner.parentElement &&
             (banner.parentElement.textContent || "").trim().length < 160) banner = banner.parentElement;
      if (banner) banner.style.display = "none";
      const ds = app.canvas.ds; ds.scale = 0.6; ds.offset = [115, 175];
      app.canvas.setDirty(true, true); app.canvas.draw(true, true);""")
    time.sleep(1)
    shot = tmp_path / "story_graph.png"
    driver.save_screenshot(str(shot))
    assert shot.stat().st_size > 20_000
    if os.environ.get("CONSISTORY_UPDATE_SCREENSHOT") == "1":
        shutil.copyfile(shot, README_SCREENSHOT)
