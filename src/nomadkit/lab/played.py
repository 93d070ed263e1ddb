"""A tour's kit as a lab VM plays it: `hardware: lab`, and on an emulated CPU, lighter streams.

Under TCG a kit has one emulated core that runs x264 at a few percent of real time: the demo's
640x360 at 25 fps never reaches the relay live. So on TCG each stream is played at
`TCG_RESOLUTION`, `TCG_FPS` and one `TCG_KBPS` rung (the lowest the tour file allows): the same
pipeline, proven in real time, with less work. With KVM the tour's own streams are played.
"""

from __future__ import annotations

from typing import Any

TCG_RESOLUTION = "320x180"
TCG_FPS = 10
TCG_KBPS = 300
# AAC is the costliest part on an emulated core: 48 kHz stereo took 134 % of it, this 15 %.
TCG_AUDIO = {"audio_kbps": 32, "audio_channels": 1, "audio_rate": 16000, "audio_coder": "fast"}


def play_in_lab(kit: dict[str, Any], accel: str) -> dict[str, Any]:
    """Make one kit (the tour file's mapping) a lab kit for this accelerator, in place."""
    kit["hardware"] = "lab"
    if accel == "tcg":
        for stream in kit.get("streams", []):
            stream.update(resolution=TCG_RESOLUTION, fps=TCG_FPS, bitrates_kbps=[TCG_KBPS], **TCG_AUDIO)
    return kit


def lab_note(accel: str) -> str:
    """What the played tour changes, for the header of the file it is written to."""
    if accel != "tcg":
        return "every kit `hardware: lab`"
    return (f"every kit `hardware: lab`; streams at {TCG_RESOLUTION}, {TCG_FPS} fps, "
            f"{TCG_KBPS} kbps, mono {TCG_AUDIO['audio_rate'] // 1000} kHz audio at "
            f"{TCG_AUDIO['audio_kbps']} kbps (TCG: one emulated core cannot encode the tour's streams "
            "in real time)")
