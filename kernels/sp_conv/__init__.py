"""SP conv of the Spatial-TTT layer: depthwise 3x3x3 conv of q', k', v' over (time, h, w) (README.md, section 7)."""
