"""API-format graphs -> ComfyUI UI-format workflow files (what drag-and-drop loads).

Widget order and socket types come from the host's own node classes (INPUT_TYPES,
RETURN_TYPES), so a file matches the nodes it names. Seeds named ``seed`` or
``noise_seed`` carry the frontend's extra "control after generate" value.
"""
from __future__ import annotations

WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN"}
SEED_WIDGETS = {"seed", "noise_seed"}
COLUMN, ROW, MARGIN, GROUP_GAP, GROUP_TITLE = 400, 40, 40, 60, 90


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


def _height(node_class) -> int:
    specs = input_specs(node_class)
    lines = len(specs) + len(node_class.RETURN_TYPES)
    tall = sum(1 for _, kind, opts in specs if kind == "STRING" and opts.get("multiline"))
    return 60 + 26 * lines + 90 * tall


def _layout(order: list, depth: dict, heights: dict, groups, top: int = MARGIN) -> dict:
    """key -> [x, y]. Each group gets its own band of rows, top to bottom in the groups' order
    (nodes in columns by data-flow depth inside it), so no group's rectangle overlaps
    another's and the graph reads top down; nodes in no group follow in a band of their own."""
    blocks = [list(keys) for _, keys in groups]
    grouped = {k for keys in blocks for k in keys}
    rest = [k for k in order if k not in grouped]
    pos, y = {}, top
    for keys in blocks + ([rest] if rest else []):
        keys = sorted(keys, key=order.index)
        first = min(depth[k] for k in keys)
        column_y: dict = {}
        for key in keys:
            d = depth[key] - first
            pos[key] = [MARGIN + d * COLUMN, column_y.get(d, y + GROUP_TITLE)]
            column_y[d] = pos[key][1] + heights[key] + ROW
        y = max(column_y.values()) + GROUP_GAP
    return pos


NOTE_LINE, NOTE_CHAR = 18, 7.5  # a Note node (the frontend's own, no backend class): line height, char width


def note_size(text: str, width: int) -> list:
    """[width, height] of a Note that shows ``text`` without scrolling."""
    per_line = int((width - 30) / NOTE_CHAR)
    lines = sum(1 + len(line) // per_line for line in text.splitlines())
    return [width, 50 + NOTE_LINE * lines]


def note_node(node_id: int, text: str, size: list, order: int) -> dict:
    """The Read me note above the groups: what to load where and what to edit."""
    return {"id": node_id, "type": "Note", "pos": [MARGIN - 20, MARGIN], "size": size,
            "flags": {}, "order": order, "mode": 0, "inputs": [], "outputs": [], "title": "Read me",
            "properties": {}, "widgets_values": [text], "color": "#432", "bgcolor": "#653"}


def api_to_ui(api: dict, classes: dict, titles: dict | None = None, groups=(), note: str = "") -> tuple[dict, dict]:
    """(UI workflow, API twin keyed by the UI node ids) of an API graph with named keys.

    classes: node type -> class; titles: api key -> node title; groups: (title, [api keys]);
    note: the text of a Note node beside the groups (the API twin has no Note: it is UI only).
    """
    titles = titles or {}
    depth = _depths(api)
    order = sorted(api, key=lambda k: (depth[k], list(api).index(k)))
    ids = {key: i + 1 for i, key in enumerate(order)}
    heights = {key: _height(classes[api[key]["class_type"]]) for key in order}
    note_box = note_size(note, 2 * COLUMN - 60) if note else None
    pos = _layout(order, depth, heights, groups, MARGIN + note_box[1] + GROUP_GAP if note else MARGIN)

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
        ui = {"id": ids[key], "type": node["class_type"], "pos": pos[key], "size": [COLUMN - 60, heights[key]],
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
    ui_groups = []
    for title, keys in groups:
        xs = [pos[k][0] for k in keys]
        ys = [pos[k][1] for k in keys]
        bottom = max(pos[k][1] + heights[k] for k in keys)
        ui_groups.append({"title": title, "bounding": [min(xs) - 20, min(ys) - GROUP_TITLE,
                                                       max(xs) - min(xs) + COLUMN - 20, bottom - min(ys) + GROUP_TITLE + 20],
                          "color": "#3f789e", "font_size": 22, "flags": {}})
    if note:
        nodes.append(note_node(len(nodes) + 1, note, note_box, len(nodes)))
    workflow = {"last_node_id": len(nodes), "last_link_id": len(links), "nodes": nodes, "links": links,
                "groups": ui_groups, "config": {}, "extra": {}, "version": 0.4}
    twin = {str(ids[k]): {"class_type": api[k]["class_type"],
                          "inputs": {n: ([str(ids[v[0]]), v[1]] if is_link(v) else v)
                                     for n, v in api[k]["inputs"].items()}}
            for k in order}
    return workflow, twin
