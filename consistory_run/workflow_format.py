"""API-format graphs -> ComfyUI UI-format workflow files (what drag-and-drop loads).

Widget order and socket types come from the host's own node classes (INPUT_TYPES,
RETURN_TYPES), so a file matches the nodes it names. Seeds named ``seed`` or
``noise_seed`` carry the frontend's extra "control after generate" value.

The layout is for reading the graph where it opens: ComfyUI's frontend fits a workflow without a
saved view to its window (a drop or a template alike) and draws no text below 57% zoom. So the
groups stand side by side, left to right, each node is at least the size the frontend computes
for it (it keeps its size and place on load) and as wide as its title and widget values, and
the columns are as tall as makes that fit largest (see _layout).
"""
from __future__ import annotations

WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN"}
SEED_WIDGETS = {"seed", "noise_seed"}


def input_specs(node_class) -> list[tuple[str, object, dict]]:
    """(name, kind, options) of a node's inputs in widget order; a combo's kind is its list of
    choices, as a V1 node declares it (a V3 node's declaration says "COMBO" with the choices in
    its options)."""
    spec = node_class.INPUT_TYPES()
    out = []
    for section in ("required", "optional"):
        for name, value in spec.get(section, {}).items():
            kind, options = value[0], dict(value[1]) if len(value) > 1 else {}
            if kind == "COMBO":
                kind = options.pop("options")
            out.append((name, kind, options))
    return out


def is_widget(kind) -> bool:
    return isinstance(kind, (list, tuple)) or kind in WIDGET_TYPES


def is_link(value) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[1], int)


def _depths(api: dict) -> dict:
    depth: dict = {}

    def of(key):
        if key not in depth:
            sources = [v[0] for v in api[key]["inputs"].values() if is_link(v)]
            depth[key] = 1 + max((of(s) for s in sources), default=-1)
        return depth[key]

    for key in api:
        of(key)
    return depth


# What ComfyUI's frontend (litegraph; frontend 1.32.9, ComfyUI 0.3.75's) makes of a node when it loads
# a workflow, in canvas units: it grows a node smaller than its computeSize() (the title, the
# socket labels, the widgets), cuts a title wider than the node's width less two title heights,
# draws a group's title unclipped, and fits the view to the nodes (fitView: a quarter of the
# canvas left around them).
TITLE_H = 30  # a node's title bar, drawn above its pos
SLOT_H = 20  # a row of sockets
WIDGET_H = 24  # a widget (20) and the space under it (4)
TEXTAREA_H = 54  # a multiline text widget at its least (50) and the space under it
WIDGET_FRAME = 104  # a widget's input slot: its label, margins and arrows, 2 x (15 + 6 + 10), and 42 for the value
# a widget shows its label and value whole in its node's width less this (4 x 15 + 5 + 20, and 5 between)
VALUE_FRAME = 90
SLOT_FONT, TITLE_FONT, GROUP_FONT = 12, 14, 22  # px, Arial
GROUP_TITLE_H = 31  # a group's title bar: 1.4 x its font size
FIT_ZOOM, FIT_PAD = 0.75, 10
# below this zoom the frontend draws nodes as grey boxes, without text (LiteGraph.Canvas.MinFontSizeForLOD:
# 8 px of the 14 px node font, on a screen of one pixel per px)
READABLE_ZOOM = 8 / 14
SCREEN = (1600, 857)  # the canvas in a browser window of 1600 x 1000 (a laptop screen)

# What the layout adds to that, for reading and working in the graph.
MIN_WIDTH = 280
IMAGE_ROOM = 220  # what the frontend makes room for when a node shows a picture (Load Image, on load)
TEXT_CHAR, TEXT_LINE, TEXT_PAD = 6, 12, 24  # a text box's font: 10 px monospace; its margins and padding
SPARE = 20  # beyond the widest text, for fonts a little wider than Arial
GAP, COLUMN_GAP, GROUP_GAP, GROUP_PAD, MARGIN = 20, 40, 40, 20, 40
GROUP_HEAD = GROUP_TITLE_H + 14  # a group's top to its first node's title bar
NOTE_WIDTH, NOTE_TOP_WIDTH = 360, 1200  # the note before the groups, or above them

# The advance widths of " " to "~" in Arial, in thousandths of the font size (the same as Liberation
# Sans's, the font a Linux browser draws for Arial); anything else counts as a whole em.
ARIAL = [int(w) for w in """
278 278 355 556 556 889 667 191 333 333 389 584 278 333 278 278 556 556 556 556 556 556 556 556 556 556
278 278 584 584 584 556 1015 667 667 722 722 667 611 778 722 278 500 667 556 833 722 778 667 778 722 667
611 722 667 944 667 667 611 278 278 278 469 556 333 556 556 500 556 556 278 556 556 222 222 500 222 833
556 556 556 556 333 500 278 556 500 722 500 500 500 334 260 334 584""".split()]


def text_width(text: str, size: float) -> float:
    """The width of ``text`` in Arial at ``size`` px."""
    return size / 1000 * sum(ARIAL[ord(c) - 32] if " " <= c <= "~" else 1000 for c in text)


def _ceil10(value: float) -> int:
    return -(-int(value + 0.999) // 10) * 10


def text_rows(text: str, width: int) -> int:
    """The rows ``text`` takes in a text box ``width`` wide (long lines wrap)."""
    per_row = max(1, (width - TEXT_PAD) // TEXT_CHAR)
    return sum(1 + max(len(line) - 1, 0) // per_row for line in str(text).split("\n"))


def text_box_height(text: str, width: int) -> int:
    """A text box that shows ``text`` and one more line (at least the frontend's least)."""
    return max(TEXTAREA_H - 4, TEXT_LINE * (text_rows(text, width) + 1) + 4)


def shows_image_on_load(node_class) -> bool:
    """Whether the node shows a picture as soon as the workflow loads (an image upload: Load Image)."""
    return any(opts.get("image_upload") for _, _, opts in input_specs(node_class))


def node_size(node_class, title: str, values: dict | None = None) -> list:
    """[width, height] of a node: at least what the frontend computes for it, so that it keeps
    this size on load, wide enough for its whole title, its socket labels and its widgets' values
    (``values``: input name -> value), with room for text boxes and pictures."""
    values = values or {}
    specs = input_specs(node_class)
    sockets = [name for name, kind, _ in specs if not is_widget(kind)]
    widgets = [(name, kind, opts) for name, kind, opts in specs if is_widget(kind)]
    outputs = list(getattr(node_class, "RETURN_NAMES", None) or node_class.RETURN_TYPES)

    def widest(texts, size=SLOT_FONT):
        return max((text_width(str(t), size) for t in texts), default=0)

    shown = [f"{name}{values[name]}" for name, kind, opts in widgets if name in values and not is_link(values[name])
             and (isinstance(kind, (list, tuple)) or (kind == "STRING" and not opts.get("multiline")))]
    width = max(MIN_WIDTH, text_width(title, TITLE_FONT) + 2 * TITLE_H + SPARE,
                widest(sockets) + widest(outputs) + 2 * SLOT_H + 5 + SPARE,
                widest(name for name, _, _ in widgets) + WIDGET_FRAME + SPARE,
                widest(shown) + VALUE_FRAME + SPARE)
    width = _ceil10(width)
    # the frontend shares a node's spare height evenly among its text boxes: each gets the most any needs
    boxes = [values.get(name, opts.get("default", "")) for name, kind, opts in widgets
             if kind == "STRING" and opts.get("multiline")]
    box = max((text_box_height(text, width) for text in boxes), default=0)
    height = max(len(sockets), len(outputs), 1) * SLOT_H + 6 + len(boxes) * (box + 4)
    for name, kind, opts in widgets:
        if not (kind == "STRING" and opts.get("multiline")):
            height += WIDGET_H
        height += WIDGET_H * ((name in SEED_WIDGETS) + bool(opts.get("image_upload")))  # control after generate; upload
    height += 8 if widgets else 0
    height += IMAGE_ROOM if shows_image_on_load(node_class) else 0
    return [width, _ceil10(height)]


def note_size(text: str, width: int) -> list:
    """[width, height] of a Note (the frontend's own node: one text box) that shows ``text`` without scrolling."""
    return [width, _ceil10(text_box_height(text, width) + 14)]


def fit_zoom(boxes, screen=SCREEN) -> float:
    """The zoom the frontend picks when it loads a workflow without a saved view (fitView):
    ``boxes`` are the nodes' [x, y, width, height], title bars included."""
    left = min(x for x, _, _, _ in boxes) - FIT_PAD
    top = min(y for _, y, _, _ in boxes) - FIT_PAD
    right = max(x + w for x, _, w, _ in boxes) + FIT_PAD
    bottom = max(y + h for _, y, _, h in boxes) + FIT_PAD
    return min(FIT_ZOOM * screen[0] / max(right - left, 300), FIT_ZOOM * screen[1] / max(bottom - top, 300))


def _columns(keys: list, sizes: dict, limit: int) -> list:
    """keys in columns, in order: each column as tall as ``limit`` allows (one node at least)."""
    columns, height = [[]], 0
    for key in keys:
        block = TITLE_H + sizes[key][1]
        if columns[-1] and height + GAP + block > limit:
            columns, height = columns + [[]], 0
        height += (GAP if columns[-1] else 0) + block
        columns[-1].append(key)
    return columns


def _arrange(blocks: list, sizes: dict, limit: int, note: str, place: str):
    """(pos, sizes, group boxes, note size) of blocks [(title or None, keys)] side by side, left to
    right, each block's nodes in columns at most ``limit`` tall; the note first: before the blocks
    (place "left") or above them (place "top"), outside them. The note's position is pos[None]."""
    pos, out, boxes = {}, {}, []
    x, top = MARGIN, MARGIN
    note_box = note_size(note, NOTE_WIDTH) if note and place == "left" else None
    if note_box:
        pos[None] = [x, top + GROUP_HEAD + TITLE_H]
        x += note_box[0] + GROUP_GAP
    for title, keys in blocks:
        left, bottom = x, top
        x += GROUP_PAD
        for column in _columns(keys, sizes, limit):
            width, y = max(sizes[k][0] for k in column), top + GROUP_HEAD
            for key in column:
                pos[key], out[key] = [x, y + TITLE_H], [width, sizes[key][1]]
                y += TITLE_H + sizes[key][1] + GAP
            bottom, x = max(bottom, y - GAP), x + width + COLUMN_GAP
        right = x - COLUMN_GAP + GROUP_PAD
        if title is not None:
            right = max(right, left + _ceil10(text_width(title, GROUP_FONT)) + 2 * GROUP_PAD)
        boxes.append([left, top, right - left, bottom + GROUP_PAD - top])
        x = right + GROUP_GAP
    tallest = max(h for _, _, _, h in boxes)
    for box in boxes:  # one row of groups, all as tall as the tallest
        box[3] = tallest
    if note and place == "top":  # as wide as the row (up to NOTE_TOP_WIDTH), the row below it
        note_box = note_size(note, min(x - GROUP_GAP - MARGIN, NOTE_TOP_WIDTH))
        pos[None] = [MARGIN, MARGIN + TITLE_H]
        shift = TITLE_H + note_box[1] + GROUP_GAP
        for key in out:
            pos[key][1] += shift
        for box in boxes:
            box[1] += shift
    return pos, out, boxes, note_box


def _layout(order: list, sizes: dict, groups, note: str):
    """(pos, sizes, group boxes, note size): the groups side by side, left to right in their order
    (the nodes in no group last), so data flows left to right as in ComfyUI's own templates; in
    each group the nodes in columns, in data-flow order top down; the note before or above them.
    The placement and the columns' height are the ones at which the frontend's fit-on-load zoom
    (fit_zoom) comes out largest."""
    blocks = [(title, sorted(keys, key=order.index)) for title, keys in groups]
    grouped = {k for _, keys in blocks for k in keys}
    rest = [k for k in order if k not in grouped]
    blocks += [(None, rest)] if rest else []
    lowest = max(TITLE_H + sizes[k][1] for k in order)
    highest = sum(TITLE_H + sizes[k][1] + GAP for k in order)
    best = None
    for place in ("left", "top"):
        for limit in range(lowest, highest + 10, 10):
            pos, out, boxes, note_box = _arrange(blocks, sizes, limit, note, place)
            rects = [[pos[k][0], pos[k][1] - TITLE_H, out[k][0], out[k][1] + TITLE_H] for k in order]
            if note_box:
                rects.append([pos[None][0], pos[None][1] - TITLE_H, note_box[0], note_box[1] + TITLE_H])
            zoom = fit_zoom(rects)
            if best is None or zoom > best[0] + 1e-9:
                best = (zoom, pos, out, boxes, note_box)
    _, pos, out, boxes, note_box = best
    return pos, out, boxes[:len(groups)], note_box


def note_node(node_id: int, text: str, pos: list, size: list, order: int) -> dict:
    """The Read me note before the groups: what to load where and what to edit."""
    return {"id": node_id, "type": "Note", "pos": pos, "size": size,
            "flags": {}, "order": order, "mode": 0, "inputs": [], "outputs": [], "title": "Read me",
            "properties": {}, "widgets_values": [text], "color": "#432", "bgcolor": "#653"}


def api_to_ui(api: dict, classes: dict, titles: dict | None = None, groups=(), note: str = "",
              display_names: dict | None = None) -> tuple[dict, dict]:
    """(UI workflow, API twin keyed by the UI node ids) of an API graph with named keys.

    classes: node type -> class; titles: api key -> node title; groups: (title, [api keys]);
    note: the text of a Note node before the groups (the API twin has no Note: it is UI only);
    display_names: node type -> the title the frontend shows for a node without one (the host's
    NODE_DISPLAY_NAME_MAPPINGS), which the node's width makes room for.
    """
    titles, display_names = titles or {}, display_names or {}
    depth = _depths(api)
    order = sorted(api, key=lambda k: (depth[k], list(api).index(k)))
    ids = {key: i + 1 for i, key in enumerate(order)}
    sizes = {key: node_size(classes[api[key]["class_type"]],
                            titles.get(key, display_names.get(api[key]["class_type"], api[key]["class_type"])),
                            api[key]["inputs"]) for key in order}
    pos, sizes, boxes, note_box = _layout(order, sizes, groups, note)

    links, outputs_links = [], {}
    nodes = []
    for key in order:
        node = api[key]
        cls = classes[node["class_type"]]
        ui_inputs, widgets = [], []
        sockets = [(n, k, o) for n, k, o in input_specs(cls) if not is_widget(k)]
        for name, kind, _ in sockets:
            ui_inputs.append({"name": name, "type": kind, "link": None})
        for name, kind, opts in input_specs(cls):
            value = node["inputs"].get(name, opts.get("default", kind[0] if isinstance(kind, list) and kind else None))
            if not is_widget(kind):
                continue
            if is_link(value):
                ui_inputs.append({"name": name, "type": kind if isinstance(kind, str) else "COMBO",
                                  "link": None, "widget": {"name": name}})
                value = opts.get("default")
            widgets.append(value)
            if name in SEED_WIDGETS:
                widgets.append("fixed")
        for slot, entry in enumerate(ui_inputs):
            value = node["inputs"].get(entry["name"])
            if is_link(value):
                src, src_slot = value
                link_id = len(links) + 1
                kind = classes[api[src]["class_type"]].RETURN_TYPES[src_slot]
                links.append([link_id, ids[src], src_slot, ids[key], slot, kind])
                outputs_links.setdefault((src, src_slot), []).append(link_id)
                entry["link"] = link_id
        names = getattr(cls, "RETURN_NAMES", None) or cls.RETURN_TYPES
        ui = {"id": ids[key], "type": node["class_type"], "pos": pos[key], "size": sizes[key],
              "flags": {}, "order": order.index(key), "mode": 0, "inputs": ui_inputs,
              "outputs": [{"name": n, "type": t, "links": [], "slot_index": i}
                          for i, (n, t) in enumerate(zip(names, cls.RETURN_TYPES))],
              "properties": {"Node name for S&R": node["class_type"]}, "widgets_values": widgets}
        if key in titles:
            ui["title"] = titles[key]
        nodes.append(ui)
    for ui in nodes:
        key = order[ui["id"] - 1]
        for out in ui["outputs"]:
            out["links"] = outputs_links.get((key, out["slot_index"]), [])
    ui_groups = [{"title": title, "bounding": box, "color": "#3f789e", "font_size": GROUP_FONT, "flags": {}}
                 for (title, _), box in zip(groups, boxes)]
    if note:
        nodes.append(note_node(len(nodes) + 1, note, pos[None], note_box, len(nodes)))
    workflow = {"last_node_id": len(nodes), "last_link_id": len(links), "nodes": nodes, "links": links,
                "groups": ui_groups, "config": {}, "extra": {}, "version": 0.4}
    twin = {str(ids[k]): {"class_type": api[k]["class_type"],
                          "inputs": {n: ([str(ids[v[0]]), v[1]] if is_link(v) else v)
                                     for n, v in api[k]["inputs"].items()}}
            for k in order}
    return workflow, twin
