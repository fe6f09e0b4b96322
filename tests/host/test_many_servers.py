"""A long story from a bank on three real ComfyUI servers on loopback (consistory_run.servers):
the bank goes to each through the pack's route, the scenes are split into chunks, and the
images equal a one-process run of the same chunks bit for bit, also when a server is stopped
in the middle of a chunk. The route keeps only valid banks, inside the banks folder."""
import http.client
import json
import urllib.parse

import numpy as np
import pytest

from consistory_run.graphs import make_subject_graph
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


def settings(bank):
    from consistory_run.servers import settings_from_bank
    return settings_from_bank(bank, TINY, negative="blurry", seed=1, steps=6, cfg=5.0, sampler="euler",
                              scheduler="normal")


def pixels(paths) -> list:
    from PIL import Image
    return [np.asarray(Image.open(p)) for p in paths]


def one_process(host, outputs, bank, chunk_size: int) -> list:
    """The same chunks' graphs run one after another in this process."""
    from consistory_run.servers import chunk_graph, chunks_of
    images = []
    for chunk in chunks_of(SCENES, chunk_size):
        prefix = f"here_{chunk_size}_{chunk.index:04d}"
        host.run(chunk_graph(chunk, f"output/{bank.name}", settings(bank), prefix))
        images += sorted(outputs.glob(f"{prefix}_*.png"))
    return pixels(images)


def test_three_servers_render_what_one_process_renders(host, outputs, bank, servers, tmp_path):
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


def test_a_server_stopped_in_a_chunk_hands_it_to_another(host, outputs, bank, servers, tmp_path):
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
