"""Ask a model the training summary question over held-out synthetic scenes (32 keyframes) and print
its answer beside the truth (spatial.describe.summarize_episode of what the stream saw)."""
import sys

from spatial_ttt_ros.runtime.config import load_config
from spatial_ttt_ros.runtime.engine import StreamingEngine
from spatial_ttt_ros.spatial.describe import summarize_episode
from spatial_ttt_ros.spatial.prompts import build_prompt
from spatial_ttt_ros.spatial.scene import validate_scene
from spatial_ttt_ros.train.dataset import SUMMARY_QUESTION
from spatial_ttt_ros.train.demo_data import synth_episode, window_frames

ckpt = sys.argv[1]
engine = StreamingEngine.from_preset("demo", device="cpu", checkpoint=ckpt)
cfg = load_config("demo")
prompt = build_prompt("free_form", question=SUMMARY_QUESTION, append_many_rooms=cfg.append_many_rooms).text
for seed in (1000001, 1000002, 1000003):
    rgb, stamps, poses, info = synth_episode(seed, cfg, frames=160, stride=5, tour="oneway",
                                             window=window_frames(cfg, engine.tokenizer))
    engine.reset()
    for image, stamp in zip(rgb, stamps):
        engine.push_frame(image, float(stamp))
    table = {int(f): ids for f, ids in info["visibility"].items()}
    truth = summarize_episode(validate_scene(info["scene"]), table)
    answer = engine.ask(prompt, max_new_tokens=300).text
    print(f"seed {seed}\n  truth : {truth!r}\n  model : {answer!r}")
