"""Test-only harness of comfyui-consistory: tiny random-weight models built from the host's
own classes, probe nodes that look into a graph, a fresh-process graph runner and a server
launcher. Used by tests/ and benchmarks/; nothing in the node pack imports it."""
