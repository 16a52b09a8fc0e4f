"""Bags, annotations and synthetic recordings; numpy, OpenCV, rosbags and mcap, no rclpy or torch.

Modules (lower ones never import higher ones):
  msgs.py        topic names, CDR for Image/CompressedImage/CameraInfo/PoseStamped/String (rosbags)
  bags.py        crash-safe rosbag2 MCAP writer (BagWriter), metadata.yaml, `bag` CLI
  bag_reader.py  BagReader: every readable topic of any rosbag2 bag, what cannot be read per topic; `bag info`
  recover.py     salvage a bag whose writer was killed (recover_bag, `bag recover` CLI)
  shapes.py      object categories built from boxes and cylinders; walls and doorways of rooms
  render.py      z-buffered numpy/OpenCV rasteriser: image, depth, object-index buffer
  trajectory.py  a robot's camera path through a scene (occupancy grid, A*, 10 Hz poses)
  synth.py       procedural scenes and `synthesize`: a recording-like bag + scene.yaml
  annotate.py    descriptions and spatial QA for a recorded bag from its scene file
"""
