"""Provides HistoryLog: histories.jsonl kept bounded, appended like metrics.jsonl, thinned by atomic rewrite."""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

from tuitrain.events import HistoryRecord
from tuitrain.files import read_regular
from tuitrain.store.checkpoints import atomic_write
from tuitrain.store.histories import MAX_RECORDS, add_record, parse_lines, record_to_json, thin


class HistoryLog:
    """The run directory's histories.jsonl. Each record is one appended line; when the file passes
    `limit` records, the older half keeps every other one and the file is replaced atomically (temp
    file, fsync, rename), so a crash leaves the old file or the new one. A resume from step S first
    drops the records from S on: the steps it redoes are recorded again. Raises OSError (a full disk)."""

    def __init__(self, path: str | os.PathLike[str], resume_step: int | None = None, limit: int = MAX_RECORDS):
        self.path = Path(path)
        self.limit = limit
        self.lines: list[tuple[int, bytes]] = []  # (step, line) of every record in the file
        self._handle: BinaryIO | None = None
        if resume_step is not None:
            try:
                data = read_regular(self.path)
            except FileNotFoundError:
                data = b""
            for record in parse_lines(data, str(self.path))[0]:
                add_record(self.lines, _step, (record.step, record_to_json(record)))
            self.lines = [line for line in self.lines if line[0] < resume_step]
            if b"".join(line for _, line in self.lines) != data:  # redone steps, a broken line, a torn tail
                atomic_write(self.path, b"".join(line for _, line in self.lines))

    def __len__(self) -> int:
        return len(self.lines)

    def append(self, record: HistoryRecord) -> None:
        line = record_to_json(record)
        count = len(self.lines)
        add_record(self.lines, _step, (record.step, line))
        if len(self.lines) > self.limit or len(self.lines) != count + 1:  # too many, or a redone step replaced
            self.lines = thin(self.lines, self.limit)
            self._rewrite()
            return
        if self._handle is None:  # opened with the first record: a run that records nothing leaves no file
            self._handle = open(self.path, "ab")
        self._handle.write(line)
        self._handle.flush()

    def _rewrite(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        atomic_write(self.path, b"".join(line for _, line in self.lines))  # appends reopen the new file

    def sync(self) -> None:
        if self._handle is not None:
            self._handle.flush()
            os.fsync(self._handle.fileno())

    def close(self) -> None:
        if self._handle is not None:
            handle, self._handle = self._handle, None
            handle.close()


def _step(line: tuple[int, bytes]) -> int:
    return line[0]
