"""`passthrough`: forwards its input unchanged (no copy); measures what a hop costs."""
import time

from posegraph import Node, Param


class Passthrough(Node):
    INPUTS = {"frame": "any packet"}
    OUTPUTS = {"frame": "the same packet"}
    PORT_TYPES = {"in:frame": "any", "out:frame": "in:frame"}
    PARAMS = {"delay_ms": Param(0.0, min=0.0, max=60000.0, help="simulated work per frame, for tests")}

    def process(self, inputs, ctx):
        if self.params["delay_ms"]:
            time.sleep(self.params["delay_ms"] / 1000.0)
        return {"frame": inputs["frame"]}
