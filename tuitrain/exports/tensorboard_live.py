"""Provides `run --tensorboard`: a consumer that writes the run's scalars and weight and gradient
histograms as TensorBoard events while it trains."""

from __future__ import annotations

from typing import Any

from tuitrain.events import EpochEnded, Event, HistoryRecord, RunEnded, RunStarted, StepProgress
from tuitrain.exports.tensorboard_files import add_history
from tuitrain.training.engine import Trainer


class TensorBoardLog:
    """Writes RUN_DIR/tensorboard/ (the same scalar and histogram tags as `tuitrain export --format
    tensorboard`; the HParams entry only the export writes, once the results are known).

    Histograms come with each history record as it is recorded: the live file keeps them all, where
    histories.jsonl (and so an export) thins a long run's older records.
    A resumed run purges the steps after its checkpoint, so TensorBoard draws one timeline.
    """

    def __init__(self, trainer: Trainer):
        self.trainer = trainer
        self.board: Any = None

    def __call__(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            from torch.utils.tensorboard import SummaryWriter

            self.close()
            folder = f"{self.trainer.run_dir}/tensorboard"
            self.board = SummaryWriter(log_dir=folder, purge_step=self.trainer.step or None)
        elif self.board is None:
            return
        elif isinstance(event, StepProgress):
            self.board.add_scalar("step/train_loss", event.loss, event.step)
            if event.accuracy is not None:
                self.board.add_scalar("step/train_accuracy", event.accuracy, event.step)
            self.board.add_scalar("step/lr", event.lr, event.step)
        elif isinstance(event, HistoryRecord):
            add_history(self.board, event)
        elif isinstance(event, EpochEnded):
            for split, metrics in (("train", event.train), ("valid", event.valid)):
                self.board.add_scalar(f"epoch/{split}_loss", metrics.loss, event.epoch)
                if metrics.accuracy is not None:
                    self.board.add_scalar(f"epoch/{split}_accuracy", metrics.accuracy, event.epoch)
            self.board.add_scalar("epoch/lr", event.lr, event.epoch)
        elif isinstance(event, RunEnded):
            if event.test is not None:
                self.board.add_scalar("test/loss", event.test.loss, event.epoch)
                if event.test.accuracy is not None:
                    self.board.add_scalar("test/accuracy", event.test.accuracy, event.epoch)
            self.close()

    def close(self) -> None:
        if self.board is not None:
            self.board.close()
            self.board = None
