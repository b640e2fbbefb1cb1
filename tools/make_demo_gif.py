#!/usr/bin/env python3
"""Make docs/demo.gif, the README's first picture: the real pipeline's annotated output.

It runs `posegraph run` on the bundled clip (the real multi-process graph: capture -> pose
-> DTW -> smoothing -> repetitions -> render -> sinks), reads the annotated mp4 it wrote with
PyAV, and writes every 3rd frame, about 240 px wide, with one 64-colour palette shared by
all frames, as a looping GIF.

Usage: .venv/bin/python tools/make_demo_gif.py [-o docs/demo.gif] [--clip PATH] [--every 3] [--width 240]
"""
from __future__ import annotations

import argparse
import itertools
import subprocess
import sys
import tempfile
from pathlib import Path

import av
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
CLIP = ROOT / "data" / "google_pose_reference" / "pose_squats.mp4"


def annotated_video(clip: Path, folder: Path) -> Path:
    """Runs the real pipeline on the clip; the annotated mp4 it wrote."""
    command = [sys.executable, str(ROOT / "runner.py"), "run", str(clip), "-o", str(folder), "--no-live"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"make_demo_gif: {' '.join(command)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    print(done.stdout.strip())
    video = folder / f"{clip.stem}.mp4"
    if not video.is_file():
        sys.exit(f"make_demo_gif: the run wrote no {video.name} in {folder}")
    return video


def frames(video: Path, every: int, width: int) -> tuple[list[Image.Image], list[int]]:
    """Every `every`-th frame, resized to `width`, and each one's duration in ms (the time
    until the next kept frame, from the video's own timestamps)."""
    images, times = [], []
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        for i, frame in enumerate(container.decode(stream)):
            if i % every:
                continue
            image = frame.to_image()  # RGB
            height = round(image.height * width / image.width)
            images.append(image.resize((width, height), Image.Resampling.LANCZOS))
            times.append(float(frame.time) if frame.time is not None else i / float(stream.average_rate or 15))
    step = (times[-1] - times[0]) / max(1, len(times) - 1) if len(times) > 1 else 0.2
    durations = [round(1000 * (b - a)) for a, b in itertools.pairwise(times)] + [round(1000 * step)]
    return images, [max(20, d) for d in durations]


def shared_palette(images: list[Image.Image], colours: int) -> Image.Image:
    """One palette for every frame (no flicker, smaller file): quantise a strip of them all."""
    sample = images[:: max(1, len(images) // 8)]
    strip = Image.new("RGB", (sum(im.width for im in sample), max(im.height for im in sample)))
    x = 0
    for im in sample:
        strip.paste(im, (x, 0))
        x += im.width
    return strip.quantize(colors=colours, method=Image.Quantize.MEDIANCUT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-o", "--output", type=Path, default=ROOT / "docs" / "demo.gif")
    parser.add_argument("--clip", type=Path, default=CLIP)
    parser.add_argument("--every", type=int, default=3, help="keep every N-th frame (3)")
    parser.add_argument("--width", type=int, default=240, help="width in pixels (240)")
    parser.add_argument("--colours", type=int, default=64, help="palette size (64)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="demo_gif_") as folder:
        images, durations = frames(annotated_video(args.clip, Path(folder)), args.every, args.width)
    palette = shared_palette(images, args.colours)
    indexed = [im.quantize(palette=palette, dither=Image.Dither.NONE) for im in images]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    indexed[0].save(args.output, save_all=True, append_images=indexed[1:], duration=durations, loop=0,
                    optimize=True, disposal=1)
    size = args.output.stat().st_size
    print(f"wrote {args.output} ({len(indexed)} frames, {images[0].width}x{images[0].height}, "
          f"{args.colours} colours, {size / 1024:.0f} KB)")


if __name__ == "__main__":
    main()
