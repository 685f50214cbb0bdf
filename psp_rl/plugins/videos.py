"""Videos of every task in TensorBoard as a run trains (``eval.video_every``).

After the first evaluation at or past every ``video_every`` env steps, each task's agent plays one
episode (:func:`~psp_rl.continual.video.record_videos`: its env seeded as that evaluation's first
env, acting as it acts), and the frames go to TensorBoard's video tab as ``video/<task>``. Under
hidden task ids the episode plays the task's own context (the id), not the inferred one.
"""

from __future__ import annotations

import tempfile
from typing import Any

import numpy as np
import torch
from tensorboard.compat.proto.summary_pb2 import Summary

from psp_rl.continual.callbacks import ContinualCallback, LoopView
from psp_rl.continual.seeds import Stream
from psp_rl.continual.video import check_video_support, record_videos


class TaskVideos(ContinualCallback):
    """One episode of every task into TensorBoard every ``every`` env steps (at an evaluation).

    :param every: env steps between videos; a video waits for the next evaluation.
    """

    def __init__(self, every: int) -> None:
        check_video_support()
        self.every, self.next_step = every, every

    def after_eval(self, loop: LoopView, rows: list[dict[str, Any]]) -> None:
        step = int(loop.agent.num_timesteps)
        if step < self.next_step:
            return
        self.next_step = (step // self.every + 1) * self.every
        import imageio

        with tempfile.TemporaryDirectory() as folder:
            videos = record_videos(
                loop.agent,
                loop.sequence,
                range(len(loop.sequence)),
                folder,
                seed=lambda task: loop.stream_seed(Stream.EVAL, step, task),
                max_episode_steps=loop.eval.max_episode_steps,
                deterministic=loop.eval.act == "greedy",
            )
            for video in videos:
                reader = imageio.get_reader(video.path)
                frames = np.stack(list(reader.iter_data()))  # (T, H, W, C) uint8
                fps = reader.get_meta_data().get("fps", 30)
                reader.close()
                summary = Summary(value=[Summary.Value(tag=f"video/{video.task}", image=_gif(frames, fps))])
                loop.writer._get_file_writer().add_summary(summary, step)

    def state_dict(self) -> dict[str, Any]:
        return {"next_step": torch.tensor(self.next_step)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.next_step = int(state["next_step"])


def _gif(frames: np.ndarray, fps: float) -> Summary.Image:
    """An animated GIF of ``(T, H, W, C)`` frames as TensorBoard's image summary: what
    ``SummaryWriter.add_video`` writes, encoded by imageio (torch's encoder needs moviepy 1's
    ``moviepy.editor``, which moviepy 2 removed)."""
    import imageio.v3 as iio

    data = iio.imwrite("<bytes>", frames, extension=".gif", duration=1000 / fps, loop=0)
    _, height, width, channels = frames.shape
    return Summary.Image(height=height, width=width, colorspace=channels, encoded_image_string=data)
