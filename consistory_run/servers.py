"""Render a long story from a bank on several running ComfyUI servers:

    python -m consistory_run.servers --bank subject.safetensors --servers http://gpu1:8188,http://gpu2:8188 \\
        --ckpt sd_xl_base_1.0.safetensors --scene "fishing on a lake" --scene ... --out story/

Through each server's ordinary HTTP API: the bank is sent once to every server (POST
/consistory/banks, a route the pack adds), the scenes are split into chunks, each chunk is
an API-format graph (Load Anchor Bank -> Use Anchors, Bank Latent numbering the chunk's
images after the scenes before it) posted to /prompt, followed on /history and its images
fetched from /view. One thread per server takes the next chunk; a chunk whose server fails
or disappears goes back to the queue for another server, and the images are written in
scene order (NNN_scene.png). A scene's image does not depend on which server renders it:
its noise is that of its place in the story, and with share_new off a new image sees only
itself and the anchors. Chunks of the same size give bit-identical images on every server;
another chunk size moves a pixel by at most one 8-bit level (a batch's size moves the last
bits of float sums).

--graphs DIR writes the chunks' API graphs instead, for any service that runs ComfyUI API
workflows (upload the bank there as output/consistory_banks/NAME, or under
models/consistory_banks/).
"""
from __future__ import annotations

import argparse
import json
import queue
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

from .__main__ import slug
from .graphs import reuse_subject_graph


class ServerGone(Exception):
    """A server did not answer, or answered with a failure of its own: try another one."""


class StoryError(Exception):
    """The graph itself failed (the same on every server): stop and say why."""


@dataclass(frozen=True)
class Chunk:
    index: int             # 0-based, in scene order
    first: int             # the story's new images before this chunk
    scenes: tuple


@dataclass
class Settings:
    """What every chunk's graph is made of (the bank's subject words and method, the model)."""
    subject: str
    words: str
    loader: dict
    style: str = "a photo of"
    negative: str = ""
    seed: int = 40
    steps: int = 50
    cfg: float = 5.0
    sampler: str = "ddim"
    scheduler: str = "ddim_uniform"
    blend: bool = True
    inject: bool = True


def chunks_of(scenes: list, size: int) -> list[Chunk]:
    return [Chunk(i, start, tuple(scenes[start:start + size])) for i, start in enumerate(range(0, len(scenes), size))]


def chunk_graph(chunk: Chunk, bank_name: str, s: Settings, prefix: str) -> dict:
    """The API graph of one chunk: reuse with Bank Latent numbering after the earlier scenes,
    decoded and saved as ``prefix``_NNNNN_.png."""
    g = reuse_subject_graph(list(chunk.scenes), bank_name, loader=s.loader, subject=s.subject, words=s.words,
                            style=s.style, negative=s.negative, seed=s.seed, steps=s.steps, cfg=s.cfg,
                            sampler=s.sampler, scheduler=s.scheduler, blend=s.blend,
                            inject="fast" if s.inject else None)
    del g["capture"]
    g["latent"]["inputs"]["first"] = chunk.first
    g["decode"] = {"class_type": "VAEDecode", "inputs": {"samples": ["sampler", 0], "vae": ["ckpt", 2]}}
    g["save"] = {"class_type": "SaveImage", "inputs": {"images": ["decode", 0], "filename_prefix": prefix}}
    return g


def settings_from_bank(bank_path: Path, loader: dict, **kw) -> Settings:
    """The subject and words the bank was made with, and its Query Blend / Feature Injection
    use (a photo bank's: both, the defaults); refuses two-pass banks."""
    from consistory_core.bank_file import AnchorBank
    bank = AnchorBank.load(bank_path)
    d = bank.description
    method = d.method or {}
    injection = method.get("injection")
    if injection is not None and injection.get("mode") == "two passes":
        raise StoryError("the bank was made with two-pass Feature Injection, which these chunk graphs do not run; "
                         "render it in one ComfyUI with the two-pass graph, or make the bank with one-pass injection")
    any_method = d.origin == "photo" or not method  # not recorded (format 1): the default method
    return Settings(subject="\n".join(t for t, _ in d.subjects), words="\n".join(", ".join(w) for _, w in d.subjects),
                    loader=loader, blend=any_method or method.get("blend") is not None,
                    inject=any_method or injection is not None, **kw)


# -- HTTP -----------------------------------------------------------------------------------
def _request(url: str, data: bytes | None = None, content_type: str = "application/json", timeout: float = 60):
    request = urllib.request.Request(url, data, {"Content-Type": content_type} if data is not None else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            return r.read()
    except urllib.error.HTTPError as e:
        body = e.read().decode(errors="replace")
        if 400 <= e.code < 500:
            raise StoryError(f"{url}: {e.code} {body[:2000]}") from None
        raise ServerGone(f"{url}: {e.code} {body[:500]}") from None
    except (OSError, urllib.error.URLError) as e:  # refused, reset, timed out
        raise ServerGone(f"{url}: {e}") from None


class Server:
    """One ComfyUI server: sends the bank once, runs graphs, fetches their images."""

    def __init__(self, url: str, poll: float = 0.3, timeout: float = 3600):
        self.url, self.poll, self.timeout = url.rstrip("/"), poll, timeout
        self.client_id = uuid.uuid4().hex
        self.bank_name = None

    def send_bank(self, path: Path) -> str:
        if self.bank_name is None:
            query = urllib.parse.urlencode({"name": path.stem})
            answer = json.loads(_request(f"{self.url}/consistory/banks?{query}", path.read_bytes(),
                                         "application/octet-stream", timeout=600))
            self.bank_name = answer["name"]
        return self.bank_name

    def run(self, graph: dict) -> str:
        """Posts the graph; returns its prompt id."""
        answer = json.loads(_request(f"{self.url}/prompt", json.dumps({"prompt": graph,
                                                                         "client_id": self.client_id}).encode()))
        if answer.get("node_errors"):
            raise StoryError(f"{self.url} refused the graph: {json.dumps(answer['node_errors'])[:2000]}")
        return answer["prompt_id"]

    def images(self, prompt_id: str) -> list[bytes]:
        """Waits for the prompt; the bytes of its saved images in order."""
        deadline = time.monotonic() + self.timeout
        while True:
            history = json.loads(_request(f"{self.url}/history/{prompt_id}"))
            if prompt_id in history:
                break
            if time.monotonic() > deadline:
                raise ServerGone(f"{self.url}: no result after {self.timeout} s")
            time.sleep(self.poll)
        entry = history[prompt_id]
        status = entry.get("status", {})
        if status.get("status_str") == "error":
            said = [m[1].get("exception_message", "") for m in status.get("messages", []) if m[0] == "execution_error"]
            raise StoryError(f"{self.url}: the graph failed: {' '.join(said) or status}")
        files = [img for out in entry["outputs"].values() for img in out.get("images", []) if img.get("type") == "output"]
        return [_request(f"{self.url}/view?" + urllib.parse.urlencode(
            {"filename": f["filename"], "subfolder": f.get("subfolder", ""), "type": "output"})) for f in files]


def render(servers: list[str], bank: Path, scenes: list[str], settings: Settings, out: Path, chunk_size: int = 4,
           log=print, on_submitted=None) -> list[Path]:
    """Renders the scenes on the servers; returns the image files in scene order.
    on_submitted(server_url, chunk): called after a chunk is posted (for tests)."""
    out.mkdir(parents=True, exist_ok=True)
    chunks = chunks_of(scenes, chunk_size)
    todo: queue.Queue = queue.Queue()
    for chunk in chunks:
        todo.put(chunk)
    done: dict = {}
    failures: list = []
    alive = {url: True for url in servers}
    lock = threading.Lock()
    run_id = uuid.uuid4().hex[:8]

    def work(url: str) -> None:
        server = Server(url)
        while not failures:
            with lock:
                if len(done) == len(chunks):
                    return
            try:
                chunk = todo.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                name = server.send_bank(bank)
                prompt_id = server.run(chunk_graph(chunk, name, settings, f"consistory_{run_id}_{chunk.index:04d}"))
                if on_submitted is not None:
                    on_submitted(url, chunk)
                images = server.images(prompt_id)
                if len(images) != len(chunk.scenes):
                    raise StoryError(f"{url} saved {len(images)} images for {len(chunk.scenes)} scenes")
            except ServerGone as e:
                todo.put(chunk)
                with lock:
                    alive[url] = False
                    left = [u for u, ok in alive.items() if ok]
                    log(f"  {url} failed ({e}); chunk {chunk.index + 1} goes to another server "
                        f"({len(left)} left)")
                    if not left:
                        failures.append("every server failed")
                return
            except StoryError as e:
                with lock:
                    failures.append(str(e))
                return
            with lock:
                done[chunk.index] = images
                rendered = sum(len(v) for v in done.values())
                log(f"  {rendered}/{len(scenes)} scenes: chunk {chunk.index + 1}/{len(chunks)} "
                    f"(scenes {chunk.first + 1}-{chunk.first + len(chunk.scenes)}) from {url}")

    threads = [threading.Thread(target=work, args=(url,), daemon=True) for url in servers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        raise StoryError(failures[0])
    files = []
    for chunk in chunks:
        for offset, (scene, data) in enumerate(zip(chunk.scenes, done[chunk.index])):
            path = out / f"{chunk.first + offset + 1:03d}_{slug(scene)}.png"
            path.write_bytes(data)
            files.append(path)
    return files


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m consistory_run.servers", description=__doc__.splitlines()[0])
    p.add_argument("--bank", type=Path, required=True, help="the bank file (.safetensors)")
    p.add_argument("--servers", default="", help="comma-separated server URLs (http://host:8188)")
    p.add_argument("--scene", action="append", dest="scenes", default=[], help="a scene; repeat for each image")
    p.add_argument("--scenes-file", type=Path, help="a text file with one scene per line")
    p.add_argument("--ckpt", help="the bank's checkpoint, by its name on the servers")
    p.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # the tests' random-weight model
    p.add_argument("--style", default="a photo of")
    p.add_argument("--negative", default="blurry, deformed")
    p.add_argument("--seed", type=int, default=40)
    p.add_argument("--steps", type=int, default=50, help="the bank's steps")
    p.add_argument("--cfg", type=float, default=5.0)
    p.add_argument("--sampler", default="ddim", help="the bank's sampler")
    p.add_argument("--scheduler", default="ddim_uniform", help="the bank's scheduler")
    p.add_argument("--chunk", type=int, default=4, help="scenes per graph")
    p.add_argument("--out", type=Path, default=Path("outputs/story_parts"))
    p.add_argument("--graphs", type=Path, help="write the chunks' API graphs to this folder instead of rendering")
    a = p.parse_args(argv)
    scenes = a.scenes + ([l.strip() for l in a.scenes_file.read_text().splitlines() if l.strip()]
                         if a.scenes_file else [])
    if not scenes:
        p.error("give the scenes (--scene, --scenes-file)")
    if (a.ckpt is None) == (not a.tiny):
        p.error("give --ckpt NAME (the checkpoint's name on the servers)")
    if a.chunk < 1:
        p.error("--chunk must be at least 1")
    loader = ({"class_type": "ConsiStoryTinySDXLCheckpoint", "inputs": {"weight_seed": 0}} if a.tiny else
              {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": a.ckpt}})
    try:
        settings = settings_from_bank(a.bank, loader, style=a.style, negative=a.negative, seed=a.seed,
                                      steps=a.steps, cfg=a.cfg, sampler=a.sampler, scheduler=a.scheduler)
    except (StoryError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if a.graphs:
        a.graphs.mkdir(parents=True, exist_ok=True)
        chunks = chunks_of(scenes, a.chunk)
        for chunk in chunks:
            graph = chunk_graph(chunk, f"output/{a.bank.name}", settings, f"consistory_{chunk.index:04d}")
            (a.graphs / f"chunk_{chunk.index + 1:04d}.json").write_text(json.dumps(graph, indent=1) + "\n")
        print(f"wrote {len(chunks)} API graphs to {a.graphs}")
        return 0
    servers = [s.strip() for s in a.servers.split(",") if s.strip()]
    if not servers:
        p.error("give --servers (or --graphs DIR)")
    print(f"{len(scenes)} scenes in chunks of {a.chunk} on {len(servers)} server(s)", flush=True)
    try:
        files = render(servers, a.bank, scenes, settings, a.out, a.chunk, log=lambda m: print(m, flush=True))
    except StoryError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"done: {len(files)} images in {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
