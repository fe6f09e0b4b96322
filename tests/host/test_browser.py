"""The pack in the real browser UI: the host's server, its page in headless Chromium (Debian's
chromium + chromium-driver, driven by Selenium), every workflow file loaded as a drop loads it
and readable as it opens on a laptop's screen, and the template browser showing the pack's
workflows with their thumbnails."""
import json
import os
import shutil
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from consistory_run.example_workflows import STORY, WORKFLOWS as BUILT
from consistory_run.host import PACK_NAME, comfyui_path
from consistory_testing.server import get_json, running_server

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((REPO / "example_workflows").glob("*.json"))
# README's pictures of the page, refreshed with CONSISTORY_UPDATE_SCREENSHOT=1
README_SCREENSHOT = REPO / "docs" / "story_graph.png"
TEMPLATES_SCREENSHOT = REPO / "docs" / "templates.png"


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and driver_path, "install Debian's chromium and chromium-driver (scripts/setup.sh --test does)"
    base = tmp_path_factory.mktemp("comfy_ui")
    shutil.copytree(REPO / "example_workflows" / "input", base / "input")  # the sample images the workflows load
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


HIDE_BANNER = """
  // today's frontend announces its news in a banner over the top bar: hide the banner only
  const texts = [...document.querySelectorAll("*")].filter(el => /^Introducing/.test((el.textContent || "").trim()));
  let banner = texts[texts.length - 1];
  while (banner && banner.parentElement &&
         (banner.parentElement.textContent || "").trim().length < 160) banner = banner.parentElement;
  if (banner) banner.style.display = "none";
"""


# Opening a workflow as a user does (a drop, or a template: both end in app.loadGraphData; a
# template opens in a tab named after it, as here) with the window at 1600 x 1000 (a laptop's
# screen): the frontend grows any node smaller than it computes, then fits the view to the nodes.
# Once a Load Image node shows its picture (it may grow for it), what the page shows is read
# back: the zoom, whether it draws text at that zoom (below LiteGraph.Canvas.MinFontSizeForLOD,
# 8 px of the 14 px node font, it draws grey boxes), every node's size, box (title bar
# included), title width as drawn and its text boxes' overflow, and the groups' boxes and
# title widths.
SCREEN = (1600, 1000)
OPEN = """
const [workflow, name, done] = [arguments[0], arguments[1], arguments[arguments.length - 1]];
const frame = () => new Promise(r => requestAnimationFrame(() => r()));
const pause = ms => new Promise(r => setTimeout(r, ms));
(async () => {
  await app.loadGraphData(workflow, true, true, name);
  await frame(); await frame();  // the fit runs on the next frame
  const pictures = () => app.graph._nodes.filter(n => n.type === "LoadImage");
  const until = Date.now() + 20000;
  while (pictures().some(n => !(n.imgs && n.imgs.length)) && Date.now() < until) await pause(100);
  await frame();
  app.canvas.setDirty(true, true); app.canvas.draw(true, true);
  await frame();
  const context = document.createElement("canvas").getContext("2d");
  const width = (text, font) => { context.font = font; return context.measureText(text).width; };
  done({zoom: app.canvas.ds.scale, textDrawn: !app.canvas.low_quality, titleHeight: LiteGraph.NODE_TITLE_HEIGHT,
        canvas: [app.canvas.canvas.clientWidth, app.canvas.canvas.clientHeight],
        pictures: pictures().map(n => !!(n.imgs && n.imgs.length)),
        nodes: app.graph._nodes.map(n => ({
          id: n.id, type: n.type, title: n.title, size: [...n.size], box: [...n.boundingRect],
          titleWidth: width(n.title, n.titleFontStyle),
          textBoxes: (n.widgets || []).filter(w => w.element instanceof HTMLTextAreaElement).map(
            w => [w.name, w.element.scrollHeight, w.element.clientHeight])})),
        groups: app.graph._groups.map(g => ({
          title: g.title, box: [...g._bounding], titleSpace: g._bounding[2] - 2 * g.constructor.padding,
          titleWidth: width(g.title, `${g.font_size}px ${LiteGraph.GROUP_FONT}`)}))});
})().catch(e => done({error: String(e)}));
"""
LEAST_ZOOM = 0.55


def overlap(a, b) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def inside(a, b) -> bool:
    return b[0] <= a[0] and a[0] + a[2] <= b[0] + b[2] and b[1] <= a[1] and a[1] + a[3] <= b[1] + b[3]


def layout_problems(workflow: dict, shown: dict) -> list:
    """What makes a workflow hard to read as the page opened it (OPEN's answer)."""
    problems = []
    if shown["zoom"] < LEAST_ZOOM:
        problems.append(f"opens at {shown['zoom']:.0%} zoom (at least {LEAST_ZOOM:.0%})")
    if not shown["textDrawn"]:
        problems.append(f"no text is drawn at {shown['zoom']:.0%} zoom")
    if not all(shown["pictures"]):
        problems.append("a Load Image node shows no picture")
    saved = {n["id"]: n["size"] for n in workflow["nodes"]}
    nodes, groups = shown["nodes"], shown["groups"]
    for node in nodes:
        name = f"{node['title']} ({node['type']})"
        if any(abs(a - b) > 0.5 for a, b in zip(node["size"], saved[node["id"]])):
            problems.append(f"{name}: {saved[node['id']]} becomes {node['size']} on load")
        if node["titleWidth"] > node["size"][0] - 2 * shown["titleHeight"]:  # the frontend cuts it there
            problems.append(f"{name}: title cut ({node['titleWidth']:.0f} px in {node['size'][0]})")
        for widget, scroll, height in node["textBoxes"]:  # (the page hides them where it draws no text)
            if shown["textDrawn"] and (height == 0 or scroll > height + 1):
                problems.append(f"{name}.{widget}: its text does not fit its box ({scroll} px in {height})")
        holders = [g["title"] for g in groups if inside(node["box"], g["box"])]
        if node["type"] == "Note":  # the note lies outside the groups
            problems += [f"{name} overlaps group {g['title']}" for g in groups if overlap(node["box"], g["box"])]
        elif len(holders) != 1:
            problems.append(f"{name} lies inside {len(holders)} groups")
    for i, a in enumerate(nodes):
        problems += [f"{a['title']} overlaps {b['title']}" for b in nodes[i + 1:] if overlap(a["box"], b["box"])]
    for i, group in enumerate(groups):
        if group["titleWidth"] > group["titleSpace"]:  # drawn unclipped: it would run out of the group
            problems.append(f"group {group['title']}: title wider than the group")
        problems += [f"group {group['title']} overlaps {other['title']}" for other in groups[i + 1:]
                     if overlap(group["box"], other["box"])]
    return problems


def open_on_screen(driver, workflow: dict, name: str, shot: Path | None = None) -> dict:
    """The page's answer to OPEN for ``workflow`` (its tab named ``name``), opened with the window
    at SCREEN; ``shot``: where to save a screenshot of it."""
    driver.set_window_size(*SCREEN)
    try:
        shown = driver.execute_async_script(OPEN, workflow, name)
        assert "error" not in shown, shown
        if shot:
            driver.execute_script(HIDE_BANNER)
            time.sleep(0.5)
            driver.save_screenshot(str(shot))
    finally:
        driver.set_window_size(1260, 1600)
    return shown


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory):
    return tmp_path_factory.mktemp("workflows_on_screen")


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_every_workflow_opens_readable_on_a_laptop_screen(page, path, screenshots):
    """Opened with the window at 1600 x 1000, each workflow fits at a zoom that draws text (55%
    at least), every node keeps the size the file gives it (none grows, so none slides under
    another), shows its whole title, sits inside exactly one group and overlaps no other node,
    every group's title fits in it, and the text boxes show all their text. The zoom is the one
    the layout (consistory_run.workflow_format.fit_zoom) planned for that canvas. A screenshot
    of each is kept (CONSISTORY_UPDATE_SCREENSHOT=1 copies the story's to the README's)."""
    from consistory_run.workflow_format import TITLE_H, fit_zoom
    driver, _ = page
    workflow = json.loads(path.read_text())
    shot = screenshots / f"{path.stem}.png"
    shown = open_on_screen(driver, workflow, path.stem, shot)
    assert layout_problems(workflow, shown) == []
    boxes = [[n["pos"][0], n["pos"][1] - TITLE_H, n["size"][0], n["size"][1] + TITLE_H] for n in workflow["nodes"]]
    assert shown["zoom"] == pytest.approx(fit_zoom(boxes, shown["canvas"]), abs=0.002)
    assert shot.stat().st_size > 50_000
    if path.stem == STORY and os.environ.get("CONSISTORY_UPDATE_SCREENSHOT") == "1":
        shutil.copyfile(shot, README_SCREENSHOT)


def test_the_layout_checks_catch_what_they_should(page):
    """Each way a workflow can open unreadable is reported: a graph too big for the screen (and so
    drawn without text), a node smaller than the frontend needs (it grows on load), a title wider
    than its node, a node outside its group or over another, a group title wider than its group,
    a text box too small for its text, a Load Image whose picture is missing."""
    driver, _ = page
    good = json.loads((REPO / "example_workflows" / f"{STORY}.json").read_text())
    assert layout_problems(good, open_on_screen(driver, good, STORY)) == []
    bad = json.loads(json.dumps(good))
    nodes = {n["type"]: n for n in bad["nodes"]}
    nodes["KSampler"]["pos"][1] += 3000  # far below the rest: the graph cannot fit at 55%
    nodes["VAEDecode"]["size"] = [100, 20]  # grows on load
    nodes["ConsiStoryFeatureInjection"]["title"] = "ConsiStory Feature Injection, one pass, " * 2
    nodes["ConsiStoryQueryBlend"]["pos"] = list(nodes["ConsiStorySDSA"]["pos"])  # on the SDSA node
    nodes["CheckpointLoaderSimple"]["pos"][0] -= 200  # half out of its group
    bad["groups"][2]["title"] = "3. Sample, decode and preview the masks of the subject in every image"
    problems = "\n".join(layout_problems(bad, open_on_screen(driver, bad, "broken")))
    for expected in ("zoom (at least 55%)", "no text is drawn", "VAE Decode (VAEDecode): [100, 20] becomes",
                     "ConsiStory Feature Injection, one pass, ConsiStory", "title cut",
                     "ConsiStory SDSA overlaps ConsiStory Query Blend",
                     "Load Checkpoint (CheckpointLoaderSimple) lies inside 0 groups",
                     "title wider than the group"):
        assert expected in problems, (expected, problems)
    small_note = json.loads(json.dumps(good))
    next(n for n in small_note["nodes"] if n["type"] == "Note")["size"][1] = 90  # its text scrolls
    problems = layout_problems(small_note, open_on_screen(driver, small_note, "small note"))
    assert len(problems) == 1 and problems[0].startswith("Read me (Note).text: its text does not fit"), problems
    photo = json.loads((REPO / "example_workflows" / "A subject from a photo.json").read_text())
    for node in photo["nodes"]:
        if node["type"] == "LoadImage":
            node["widgets_values"][0] = "no_such_photo.png"
    assert "a Load Image node shows no picture" in layout_problems(photo, open_on_screen(driver, photo, "no photo"))


CARDS = """
const [pack, done] = [arguments[0], arguments[arguments.length - 1]];
const pause = ms => new Promise(r => setTimeout(r, ms));
(async () => {
  const dialog = () => document.querySelector("[role=dialog]");
  const deadline = Date.now() + 60000;
  let item;
  while (!(item = dialog() && [...dialog().querySelectorAll("*")].find(
             e => e.children.length === 0 && e.textContent.trim() === pack))) {
    if (Date.now() > deadline) return done({error: "no " + pack + " in the template browser's list"});
    await pause(250);
  }
  item.click();  // the pack's category (Extensions > pack)
  const cards = () => [...dialog().querySelectorAll("[data-testid^='template-workflow-']")]
    .filter(c => c.getAttribute("data-testid") !== "template-workflows-content");
  let last = -1;
  while (cards().length !== last || cards().length === 0) {  // the grid settles
    if (Date.now() > deadline) return done({error: "no cards"});
    last = cards().length;
    await pause(1000);
  }
  const out = [];
  for (const card of cards()) {
    card.scrollIntoView({block: "center"});  // thumbnails load once in view
    const image = () => card.querySelector("img");
    const until = Date.now() + 20000;
    while (!(image() && image().complete && image().naturalWidth > 0) && Date.now() < until) await pause(200);
    const title = card.querySelector("h3"), description = card.querySelector("p");
    const img = image(), loaded = !!img && img.complete && img.naturalWidth > 0;
    let blocks = null;  // the picture shown: mean colour of each of 4 x 4 blocks
    if (loaded) {
      const [w, h] = [img.naturalWidth, img.naturalHeight];
      const canvas = Object.assign(document.createElement("canvas"), {width: w, height: h});
      const context = canvas.getContext("2d");
      context.drawImage(img, 0, 0);
      const data = context.getImageData(0, 0, w, h).data;
      blocks = [];
      for (let by = 0; by < 4; by++) for (let bx = 0; bx < 4; bx++) {
        const sum = [0, 0, 0]; let n = 0;
        for (let y = Math.floor(by * h / 4); y < Math.floor((by + 1) * h / 4); y++)
          for (let x = Math.floor(bx * w / 4); x < Math.floor((bx + 1) * w / 4); x++, n++)
            for (let c = 0; c < 3; c++) sum[c] += data[4 * (y * w + x) + c];
        blocks.push(sum.map(v => v / n));
      }
    }
    out.push({id: card.getAttribute("data-testid"),
              title: title && title.textContent.trim(), description: description && description.textContent.trim(),
              titleCut: !!title && title.scrollHeight > title.clientHeight + 1, src: img && img.currentSrc,
              size: loaded ? [img.naturalWidth, img.naturalHeight] : null, blocks});
  }
  const fetched = performance.getEntriesByType("resource").map(e => [decodeURIComponent(e.name), e.responseStatus]);
  let scroller = cards()[0];  // back to the top of the list, for the screenshot
  while (scroller && scroller.scrollHeight <= scroller.clientHeight + 1) scroller = scroller.parentElement;
  if (scroller) scroller.scrollTop = 0;
  const r = dialog().getBoundingClientRect();
  done({cards: out, fetched, dialog: [r.left, r.top, r.right, r.bottom].map(v => v * window.devicePixelRatio)});
})().catch(e => done({error: String(e)}));
"""


def test_the_template_browser_shows_each_workflow_with_its_title_description_and_thumbnail(page, tmp_path):
    """Workflow > Browse Templates, the pack's category: one card per example workflow, titled
    with its name (whole, on the card's one line), described by it (the frontend turns - and _
    into spaces), and its thumbnail: example_workflows/NAME.jpg fetched from the host and shown
    (the picture decoded in the card is that file's, not the placeholder the frontend shows when
    the file is missing)."""
    from PIL import Image
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys
    driver, _ = page
    driver.set_window_size(1260, 1760)  # three rows of cards
    try:  # the command the menu's Browse Templates item runs
        driver.execute_script("performance.setResourceTimingBufferSize(10000); performance.clearResourceTimings();"
                              "app.extensionManager.command.execute('Comfy.BrowseTemplates')")
        result = driver.execute_async_script(CARDS, PACK_NAME)
        assert "error" not in result, result
        time.sleep(1)
        driver.execute_script(HIDE_BANNER)
        shot = tmp_path / "templates.png"
        driver.save_screenshot(str(shot))
    finally:
        ActionChains(driver).send_keys(Keys.ESCAPE).perform()
        driver.set_window_size(1260, 1600)
    cards = {c["id"].removeprefix("template-workflow-"): c for c in result["cards"]}
    assert sorted(cards) == sorted(BUILT)
    for name, card in cards.items():
        assert card["title"] == name, card
        assert not card["titleCut"], f"{name}: its title is cut on the card"
        assert card["description"] == name.replace("-", " ").replace("_", " "), card
        url = f"/api/workflow_templates/{PACK_NAME}/{name}.jpg"
        assert [status for fetched, status in result["fetched"] if fetched.endswith(url)][-1:] == [200], name
        assert "default-template" not in card["src"], card["src"]
        with Image.open(REPO / "example_workflows" / f"{name}.jpg") as thumbnail:
            assert card["size"] == list(thumbnail.size), (name, card["size"])
            pixels = np.asarray(thumbnail.convert("RGB"), dtype=np.float64)
        h, w = pixels.shape[:2]
        blocks = [pixels[by * h // 4:(by + 1) * h // 4, bx * w // 4:(bx + 1) * w // 4].mean((0, 1))
                  for by in range(4) for bx in range(4)]
        assert np.abs(np.array(card["blocks"]) - np.array(blocks)).max() < 8, name
    assert shot.stat().st_size > 100_000
    if os.environ.get("CONSISTORY_UPDATE_SCREENSHOT") == "1":
        with Image.open(shot) as image:  # the dialog, in 256 colours (a third of the bytes)
            dialog = image.convert("RGB").crop(tuple(round(v) for v in result["dialog"]))
            dialog.quantize(256, Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(TEMPLATES_SCREENSHOT,
                                                                                         optimize=True)
