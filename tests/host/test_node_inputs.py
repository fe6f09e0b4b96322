"""Choices a node does not offer are refused naming the input, on a host that checks them
before the run (ComfyUI 0.38, and V1 nodes) and on one that does not check a V3 node's combo
values (0.3.75): then the node's own check does."""
import pytest

from consistory_run.graphs import story_graph


@pytest.mark.parametrize("node, field, message", [
    ("sdsa", "blocks", r"ConsiStory SDSA: blocks 'everywhere' is not one of \['output \(paper\)'"),
    ("sdsa", "dit_positions", r"ConsiStory SDSA: dit_positions 'everywhere' is not one of \['shifted \(ShiftPE\)'"),
    ("mask_settings", "resolution", r"ConsiStory Subject Masks: resolution 'everywhere' is not one of "
                                    r"\['low \(latent/4\)'"),
])
def test_a_choice_the_node_does_not_offer_is_refused_naming_it(host, latents, node, field, message):
    from consistory_run.host import GraphError
    g = story_graph(mask_resolution="high (latent/2)")
    g[node]["inputs"][field] = "everywhere"
    with pytest.raises(GraphError, match=message):
        host.run(g)
