"""A long story from a bank on three real ComfyUI servers on loopback (consistory_run.servers):
the bank goes to each through the pack's route, the scenes are split into chunks, and the
images equal a one-process run of the same chunks bit for bit, also when a server is stopped
in the middle of a chunk, whichever server records a bank's anchor cache with which chunk,
and with another process spinning on the CPU beside them. The route keeps only valid banks,
inside the banks folder."""
import http.client
import io
import json
import urllib.parse

import numpy as np
import pytest
from PIL import Image

from consistory_run.graphs import make_subject_graph
from consistory_testing.load import busy_cpu
from consistory_testing.server import PROCESSES, running_servers

SCENES = ["cooking dinner", "swimming in a lake", "riding a horse", "reading a book", "playing chess",
          "walking in the snow"]
TINY = {"class_type": "ConsiStoryTinySDXLCheckpoint", "inputs": {"weight_seed": 0}}


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    with running_servers([tmp_path_factory.mktemp(f"server{i}") for i in range(3)]) as urls:
        yield urls


@pytest.fixture
def bank(host, outputs):
    host.run(make_subject_graph(["walking in a park", "sitting in an armchair"], anchors=2, prefix="story", steps=6))
    return outputs / "consistory_banks" / "story_00001.safetensors"


@pytest.fixture
def busy():
    """A process spinning on the CPU beside the servers for the whole test."""
    with busy_cpu():
        yield


def settings(bank):
    from consistory_run.servers import settings_from_bank
    return settings_from_bank(bank, TINY, negative="blurry", seed=1, steps=6, cfg=5.0, sampler="euler",
                              scheduler="normal")


def pixels(paths) -> list:
    return [np.asarray(Image.open(p)) for p in paths]


def one_process(host, outputs, bank, chunk_size: int, scenes=SCENES) -> list:
    """The same chunks' graphs run one after another in this process."""
    from consistory_run.servers import chunk_graph, chunks_of
    images = []
    for chunk in chunks_of(scenes, chunk_size):
        prefix = f"here_{chunk_size}_{chunk.index:04d}"
        host.run(chunk_graph(chunk, f"output/{bank.name}", settings(bank), prefix))
        images += sorted(outputs.glob(f"{prefix}_*.png"))
    return pixels(images)


def test_three_servers_render_what_one_process_renders(host, outputs, bank, servers, tmp_path, busy):
    from consistory_run.servers import render
    said = []
    files = render(servers, bank, SCENES, settings(bank), tmp_path / "story", chunk_size=2, log=said.append)
    assert [f.name for f in files] == [f"{i + 1:03d}_{s.replace(' ', '_')}.png" for i, s in enumerate(SCENES)]
    here = one_process(host, outputs, bank, 2)
    assert len(here) == len(SCENES)
    for i, (a, b) in enumerate(zip(pixels(files), here)):
        assert np.array_equal(a, b), f"scene {i + 1} differs from the one-process run"
    assert len({line.split(" from ")[-1] for line in said}) > 1  # more than one server did the work
    assert not np.array_equal(here[0], here[1])


def test_a_server_stopped_in_a_chunk_hands_it_to_another(host, outputs, bank, servers, tmp_path, busy):
    from consistory_run.servers import render
    stopped = []

    def stop_first(url, chunk):  # the second server dies right after it has taken a chunk
        if url == servers[1] and not stopped:
            PROCESSES[url].kill()
            PROCESSES[url].wait()
            stopped.append(chunk.index)

    said = []
    files = render(servers, bank, SCENES, settings(bank), tmp_path / "story", chunk_size=1, log=said.append,
                   on_submitted=stop_first)
    assert stopped and any(f"{servers[1]} failed" in line for line in said), said
    here = one_process(host, outputs, bank, 1)
    for i, (a, b) in enumerate(zip(pixels(files), here)):
        assert np.array_equal(a, b), f"scene {i + 1} differs from the one-process run"
    # split otherwise, a scene keeps its image: its noise is its place in the story (Bank Latent's
    # first); only a batch's size moves the last bits of float sums (measured: at most one 8-bit level)
    for i, (a, b) in enumerate(zip(here, one_process(host, outputs, bank, 2))):
        assert np.abs(a.astype(int) - b).max() <= 1, f"scene {i + 1} changes with the split"


def test_a_chunk_recorded_on_one_server_and_played_on_another_renders_the_same(host, outputs, servers, busy):
    """A bank no server has seen: server A records its anchor cache with chunk 1 and plays
    chunk 2 from it, server B records with chunk 2 and plays chunk 1; both render every scene
    as one process does, pixel for pixel (chunks of one image: a batch of one rounds otherwise
    than a batch beside the anchors, so a cache recorded beside the new images would show)."""
    from consistory_run.servers import Server, chunk_graph, chunks_of
    host.run(make_subject_graph(["walking on a beach", "standing in a doorway"], anchors=2, prefix="forced", steps=6))
    bank = outputs / "consistory_banks" / "forced_00001.safetensors"
    first, second = chunks_of(SCENES[:2], 1)

    def render_on(url, chunk):
        server = Server(url)
        name = server.send_bank(bank)
        prompt = server.run(chunk_graph(chunk, name, settings(bank), f"forced_{chunk.index}"))
        return [np.asarray(Image.open(io.BytesIO(data))) for data in server.images(prompt)]

    server_a, server_b = [url for url in servers if PROCESSES[url].poll() is None][:2]  # (another test stops one)
    a = {c.index: render_on(server_a, c) for c in (first, second)}   # A records with chunk 1
    b = {c.index: render_on(server_b, c) for c in (second, first)}   # B records with chunk 2
    here = one_process(host, outputs, bank, 1, SCENES[:2])
    for i in (0, 1):
        assert np.array_equal(a[i][0], b[i][0]), f"scene {i + 1}: recorded on one server, played on the other"
        assert np.array_equal(a[i][0], here[i]), f"scene {i + 1} differs from the one-process run"


def send(url: str, data: dict) -> None:
    """POSTs JSON to a route that answers with no body."""
    import urllib.request
    request = urllib.request.Request(url, json.dumps(data).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        assert answer.status == 200


def test_a_busy_server_renders_each_prompt_as_a_fresh_process_would(host, outputs, servers, busy):
    """What a user's server sees: 20 prompts queued at once reusing three banks (a cache budget
    that holds any two of their caches, not three, so they evict each other), some deleted
    from the queue, one interrupted in the
    middle of its sampling (its bank's cache half recorded), a process spinning beside it.
    Every prompt that ran gives the images the same graph gives with no cache kept (a new
    process's state), pixel for pixel."""
    from consistory_run.servers import Chunk, Server, chunk_graph
    from consistory_testing.pack import pack_module
    from consistory_testing.server import get_json, post_json
    url = next(u for u in servers if PROCESSES[u].poll() is None)
    banks = []
    for i, scenes in enumerate((["walking in a park", "sitting in an armchair"], ["standing on a hill", "eating soup"],
                                ["waving from a boat", "reading a map"])):
        host.run(make_subject_graph(scenes, anchors=2, prefix=f"busy{i}", steps=6, seed=10 + i))
        banks.append(outputs / "consistory_banks" / f"busy{i}_00001.safetensors")
    names = [Server(url).send_bank(bank) for bank in banks]
    cache = pack_module(host.nodes.NODE_CLASS_MAPPINGS, "consistory_patches.anchor_cache")
    sizes = []
    for b, bank in enumerate(banks):  # each bank's cache, measured here
        cache.forget_caches()
        host.run(chunk_graph(Chunk(0, 0, (SCENES[0],)), f"output/{bank.name}", settings(bank), f"size{b}"))
        (kept,) = cache._CACHES.values()
        sizes.append(kept.nbytes)
    budget_gb = (sum(sizes) - min(sizes)) / 1e9  # any two fit, three do not

    def graph(b, chunk, prefix):
        g = chunk_graph(chunk, names[b], settings(banks[b]), prefix)
        g["sdsa"]["inputs"]["cache_budget_gb"] = budget_gb
        return g

    plan = []  # (bank index, chunk, prefix)
    for n in range(20):
        b = (0, 0, 1, 2, 0, 1, 2, 2, 0, 1)[n % 10]
        chunk = Chunk(n % 3, n % 4, tuple(SCENES[(n + j) % len(SCENES)] for j in range(1 + n % 2)))
        plan.append((b, chunk, f"busy_{n:02d}"))
    ids = [post_json(url + "/prompt", {"prompt": graph(b, chunk, prefix)})["prompt_id"] for b, chunk, prefix in plan]
    deleted = ids[5:7] + ids[13:14]
    send(url + "/queue", {"delete": deleted})
    interrupted = None
    for _ in range(100):  # the one running now is stopped in the middle of its steps
        running = get_json(url + "/queue")["queue_running"]
        if running:
            interrupted = running[0][1]
            send(url + "/interrupt", {})
            break
    server = Server(url)
    compared = 0
    for (b, chunk, prefix), prompt in zip(plan, ids):
        if prompt in deleted or prompt == interrupted:
            continue
        served = [np.asarray(Image.open(io.BytesIO(data))) for data in server.images(prompt)]
        cache.forget_caches()
        host.run(chunk_graph(chunk, f"output/{banks[b].name}", settings(banks[b]), "twin_" + prefix))
        twins = pixels(sorted(outputs.glob(f"twin_{prefix}_*.png")))
        assert len(served) == len(twins) == len(chunk.scenes)
        for a, t in zip(served, twins):
            assert np.array_equal(a, t), f"prompt {prefix} differs from its twin"
        compared += 1
    assert compared >= 15 and interrupted is not None


def _post(url: str, body: bytes, name: str, claimed: int | None = None):
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    connection.putrequest("POST", "/consistory/banks?" + urllib.parse.urlencode({"name": name}))
    connection.putheader("Content-Length", str(claimed if claimed is not None else len(body)))
    connection.endheaders()
    try:
        connection.send(body)
        answer = connection.getresponse()
        return answer.status, json.loads(answer.read())
    finally:
        connection.close()


def test_the_route_keeps_only_banks_and_only_in_the_banks_folder(bank, servers):
    url = servers[0]
    status, answer = _post(url, b"not a bank at all", "junk")
    assert status == 400 and "not a usable anchor bank" in answer["error"], answer
    status, answer = _post(url, b"x" * 16, "huge", claimed=300 * 1024 * 1024)
    assert status == 413 and "limit" in answer["error"], answer
    data = bank.read_bytes()
    status, answer = _post(url, data, "../../../escape")
    assert status == 200 and answer["name"].startswith("output/escape_") and "/" not in answer["name"][7:], answer
    again = _post(url, data, "../../../escape")[1]
    assert again["name"] == answer["name"] and again["sha256"] == answer["sha256"]
