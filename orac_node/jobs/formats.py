"""A finished job as text, SubRip (SRT), WebVTT or JSON: what ``jobs result`` writes."""

from __future__ import annotations

import datetime as dt
from typing import Literal, get_args

import srt
import webvtt

from orac_node.wire import JobInfo

Format = Literal["text", "srt", "vtt", "json"]
FORMATS: tuple[Format, ...] = get_args(Format)


def render(job: JobInfo, fmt: Format) -> str:
    """The job's transcript in ``fmt``; segments carry times on the recording's timeline."""
    if fmt == "json":
        return job.encode().decode() + "\n"
    if fmt == "text":
        return job.text + "\n"
    if fmt == "srt":
        return str(
            srt.compose(
                srt.Subtitle(i, _delta(s.start), _delta(max(s.end, s.start + 0.01)), s.text)
                for i, s in enumerate(job.segments, start=1)
            )
        )
    captions = [
        webvtt.Caption(vtt_time(s.start), vtt_time(max(s.end, s.start + 0.01)), s.text)
        for s in job.segments
    ]
    return str(webvtt.WebVTT(captions=captions).content)


def _delta(seconds: float) -> dt.timedelta:
    return dt.timedelta(seconds=seconds)


def vtt_time(seconds: float) -> str:
    """WebVTT's ``hh:mm:ss.ttt``."""
    millis = round(seconds * 1000)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}.{millis:03d}"
