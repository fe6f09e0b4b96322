"""The pack's HTTP route on the host's server: a bank file delivered to a running ComfyUI,
so a story's scenes can be rendered from it on several servers (consistory_run.servers).

    POST /consistory/banks?name=STEM   body: the bank's .safetensors bytes
    -> 200 {"name": "output/STEM_<sha256[:12]>.safetensors", "sha256": ..., "bytes": ...}

The file is checked as a bank (AnchorBank.load: format, version, consistency) before it is
kept, at most MAX_BYTES are read, and it is written only to the output folder's
consistory_banks/ under a name made of the stem's safe characters and the content's hash
(the same bank sent twice is one file; two banks never overwrite each other). Load Anchor
Bank lists it as the returned name. A bad body answers 400, a too large one 413, with a
message saying why.
"""
from __future__ import annotations

import hashlib
import os
import re
import tempfile

from .consistory_core.bank_file import AnchorBank, BankError

MAX_BYTES = 256 * 1024 * 1024  # a 1024² bank of 2 anchors and 50 steps is about 29 MB
ROUTE = "/consistory/banks"


def safe_stem(name: str) -> str:
    """A file stem of letters, digits, '-' and '_' only (no folders, no dots), at most 64 long."""
    stem = os.path.basename(name.replace("\\", "/"))
    stem = stem[:-len(".safetensors")] if stem.endswith(".safetensors") else stem
    return re.sub(r"[^A-Za-z0-9_-]", "_", stem)[:64].strip("_") or "bank"


def keep_bank(data: bytes, name: str, folder: str) -> dict:
    """Checks ``data`` as a bank and writes it to ``folder`` as STEM_<sha256[:12]>.safetensors;
    BankError (and nothing written) if it is none. Returns {"file", "sha256", "bytes"}."""
    digest = hashlib.sha256(data).hexdigest()
    os.makedirs(folder, exist_ok=True)
    final = f"{safe_stem(name)}_{digest[:12]}.safetensors"
    handle, temporary = tempfile.mkstemp(prefix=".upload-", suffix=".safetensors", dir=folder)
    try:
        with os.fdopen(handle, "wb") as f:
            f.write(data)
        try:
            AnchorBank.load(temporary)
        except BankError as e:
            raise BankError(str(e).replace(temporary, "the file")) from None
        os.replace(temporary, os.path.join(folder, final))
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return {"file": final, "sha256": digest, "bytes": len(data)}


def register(routes) -> None:
    """Adds the route to the host server's RouteTableDef (before the server starts)."""
    from aiohttp import web

    from .nodes.save_load_bank import OUTPUT_PREFIX, output_folder

    @routes.post(ROUTE)
    async def upload_bank(request):
        if request.content_length is not None and request.content_length > MAX_BYTES:
            return web.json_response({"error": f"a bank of {request.content_length} bytes is over the "
                                               f"{MAX_BYTES}-byte limit"}, status=413)
        data = bytearray()
        while chunk := await request.content.read(1 << 20):
            data += chunk
            if len(data) > MAX_BYTES:
                return web.json_response({"error": f"a bank over the {MAX_BYTES}-byte limit"}, status=413)
        try:
            kept = keep_bank(bytes(data), request.query.get("name", "bank"), output_folder())
        except BankError as e:
            return web.json_response({"error": f"not a usable anchor bank: {e}"}, status=400)
        return web.json_response({"name": OUTPUT_PREFIX + kept.pop("file"), **kept})


def register_on_host() -> None:
    """Registers the route where the host runs its server (not in a headless host)."""
    try:
        from server import PromptServer
    except ImportError:
        return
    instance = getattr(PromptServer, "instance", None)
    if instance is not None:
        register(instance.routes)
