"""Pure Python + numpy spatial layer: question kinds and prompts, answer parsing, VSI-Bench
metrics, camera and box geometry, scene annotation files, and descriptions/QA generated from them.

Modules (lower ones never import higher ones):
  prompts.py      QuestionKind, per-kind facts, VSI-Bench prompt templates -> Prompt
  answers.py      model text -> ParsedAnswer (numbers with units, option letters); vsi_extract
  metrics.py      MRA, MC accuracy, score_item, aggregate (the eight VSI-Bench tasks)
  camera.py       conventions, quaternions, pinhole intrinsics, projection, look_at_pose
  geometry.py     OrientedBox, exact box distance, directions, polygon area, visibility
  scene.py        the scene annotation file (spatial_ttt_scene/1): load, validate, save
  observations.py per-frame visibility table, first appearances, readable object names
  describe.py     dense scene / episode / chunk descriptions
  qa.py           QA items for the eight VSI-Bench kinds, answered from geometry

Nothing here imports torch, rclpy or other spatial_ttt_ros subpackages.
"""
