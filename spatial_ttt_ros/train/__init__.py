"""Rosbag replay training (floor 5): bake bags into shards, lay samples out exactly as the engine
streams them, the differentiable block-causal forward, the loop on torchrun, export and evaluation
through the streaming engine. Imports runtime/, spatial/ and data/; never ros/."""
