"""ConsiStory Save / Load Anchor Bank: banks as .safetensors files.

Banks are saved under the output folder's ``consistory_banks/`` and loaded from there
(listed as ``output/NAME``) or from ``models/consistory_banks/``, which is registered with
the host's folder_paths as ``consistory_banks`` (so extra_model_paths.yaml can add more).
"""
from __future__ import annotations

import os

import folder_paths

from ..consistory_core.bank_file import AnchorBank, BankError
from .sockets import BANK, Bank, io, schema

FOLDER = "consistory_banks"


OUTPUT_PREFIX = "output/"
NO_BANK = "(no bank yet: save one with ConsiStory Save Anchor Bank)"


def register_models_folder() -> None:
    if FOLDER not in folder_paths.folder_names_and_paths:
        folder_paths.folder_names_and_paths[FOLDER] = ([os.path.join(folder_paths.models_dir, FOLDER)], {".safetensors"})


def output_folder() -> str:
    return os.path.join(folder_paths.get_output_directory(), FOLDER)


def bank_names() -> list[str]:
    register_models_folder()
    saved = sorted(f for f in os.listdir(output_folder()) if f.endswith(".safetensors")) \
        if os.path.isdir(output_folder()) else []
    names = [OUTPUT_PREFIX + f for f in saved] + sorted(folder_paths.get_filename_list(FOLDER))
    return names or [NO_BANK]  # an empty list shows as "undefined" in the browser


def bank_path(name: str):
    if name.startswith(OUTPUT_PREFIX):
        path = os.path.join(output_folder(), name[len(OUTPUT_PREFIX):])
        return path if os.path.isfile(path) else None
    register_models_folder()
    return folder_paths.get_full_path(FOLDER, name)


class SaveAnchorBank(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return schema(
            node_id="ConsiStorySaveAnchorBank", display_name="ConsiStory Save Anchor Bank", category=BANK,
            description="Saves an anchor bank as a .safetensors file that ConsiStory Load Anchor Bank lists.",
            search_aliases=["save subject", "save consistent character"],
            inputs=[
                Bank.Input("bank", tooltip="From ConsiStory Anchor Bank."),
                io.String.Input("filename_prefix", default="subject", tooltip=
                                "File name start; the file goes to output/consistory_banks/."),
            ],
            outputs=[], is_output_node=True)

    @classmethod
    def execute(cls, bank, filename_prefix):
        folder = output_folder()
        os.makedirs(folder, exist_ok=True)
        stem = os.path.basename(filename_prefix.strip()) or "subject"
        number = 1 + max([int(f[len(stem) + 1:len(stem) + 6]) for f in os.listdir(folder)
                          if f.startswith(stem + "_") and f[len(stem) + 1:len(stem) + 6].isdigit()] or [0])
        name = f"{stem}_{number:05d}.safetensors"
        bank.save(os.path.join(folder, name))
        return io.NodeOutput(ui={"text": [OUTPUT_PREFIX + name]})


class LoadAnchorBank(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return schema(
            node_id="ConsiStoryLoadAnchorBank", display_name="ConsiStory Load Anchor Bank", category=BANK,
            description="Loads a saved anchor bank and checks that it is one.",
            search_aliases=["load subject", "load consistent character"],
            inputs=[io.Combo.Input("bank_name", options=bank_names(), tooltip="A bank saved by ConsiStory Save "
                                   "Anchor Bank (output/...) or put in models/consistory_banks/.")],
            outputs=[Bank.Output("bank", display_name="bank")])

    @classmethod
    def fingerprint_inputs(cls, bank_name):
        path = bank_path(bank_name)
        return os.path.getmtime(path) if path else ""

    @classmethod
    def execute(cls, bank_name):
        if bank_name == NO_BANK:
            raise BankError("ConsiStory Load Anchor Bank: there is no bank yet; make one with ConsiStory Anchor Bank "
                            "-> Save Anchor Bank (it goes to output/consistory_banks/), then pick it here")
        path = bank_path(bank_name)
        if path is None:
            raise BankError(f"ConsiStory Load Anchor Bank: no bank named {bank_name!r}")
        return io.NodeOutput(AnchorBank.load(path))
