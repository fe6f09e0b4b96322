"""The headless host's PromptExecutor on today's ComfyUI (0.38), which cannot be installed
here: a stand-in with 0.38's constructor and the cache arguments its execute_async reads."""
from types import SimpleNamespace

import pytest

from consistory_run.host import Host


class PromptExecutor038:
    """0.38's constructor (server, cache_type, cache_args, asset_manager); its execute reads
    cache_args["ram"] and cache_args["ram_inactive"] before running a node, as 0.38's does."""

    def __init__(self, server, cache_type=False, cache_args=None, asset_manager=None):
        self.server, self.cache_args = server, cache_args
        self.success, self.status_messages = True, []

    def execute(self, prompt, prompt_id, extra_data={}, execute_outputs=[]):
        ram = int(self.cache_args["ram"] * 1024 ** 3)
        ram_inactive = int(self.cache_args["ram_inactive"] * 1024 ** 3)
        self.headroom = (ram, ram_inactive)


class PromptExecutor03:
    """0.3.x's constructor and the one key its execute reads."""

    def __init__(self, server, cache_type=False, cache_args=None):
        self.cache_args = cache_args
        self.success, self.status_messages = True, []

    def execute(self, prompt, prompt_id, extra_data={}, execute_outputs=[]):
        self.headroom = (int(self.cache_args["ram"] * 1024 ** 3),)


def host_with(executor_class) -> Host:
    host = Host.__new__(Host)  # the parts of a started host that run() uses
    host.execution = SimpleNamespace(PromptExecutor=executor_class)
    host._executor = None
    host.validate = lambda prompt: (True, None, ["1"], {})
    return host


@pytest.mark.parametrize("executor_class", [PromptExecutor038, PromptExecutor03])
def test_the_headless_host_runs_a_graph_on_each_hosts_executor(executor_class):
    host = host_with(executor_class)
    host.run({"1": {"class_type": "SaveImage", "inputs": {}}})
    assert host._executor.headroom[0] == 0  # no RAM-pressure eviction in the headless runs
    if executor_class is PromptExecutor038:
        assert host._executor.headroom == (0, 0)
