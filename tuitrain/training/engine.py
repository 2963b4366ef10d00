"""Provides the training loop: tensors on the device, thread-safe control, dataclass events."""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from tuitrain.config import Config
from tuitrain.data.memory import check_fits
from tuitrain.data.sets import Dataset, load_dataset
from tuitrain.errors import TuitrainError, UsageError
from tuitrain.events import (
    Consumer,
    EndStatus,
    EpochEnded,
    Event,
    HistoryRecord,
    Inspection,
    LrFound,
    Metrics,
    RunEnded,
    RunStarted,
    StepProgress,
    TrainerState,
)
from tuitrain.training import dynamo_standin, inspection
from tuitrain.training.control import LoopCommand, RequestInspection
from tuitrain.training.flight import FlightRecorder
from tuitrain.training.loop_control import ENDED, LoopControl
from tuitrain.training.models import build_model, parameter_count
from tuitrain.training.recorder import DEAD_SAMPLES, Recorder
from tuitrain.training.step import LOSSES, autocast, build_optimizer, check_precision, correct_count, resolve_device
from tuitrain.training.threads import ThreadGovernor
from tuitrain.training.units import compute_units
from tuitrain.training.vitals import ProcessVitals, Vitals

log = logging.getLogger(__name__)

SEVERAL_PROCESSES = (
    "not for a run trained by several processes: `tuitrain lr-find --branch RUN_DIR` tests its checkpoint"
)

PROGRESS_INTERVAL = 0.1  # seconds between step events (each one reads the device once)
EVAL_BATCH = 8192  # samples per forward pass when evaluating
FIND_LR_INTERVAL = 0.25  # seconds between the LR range test's progress events (each one carries its curve so far)


class Trainer(LoopControl):
    """One training run in this process (a `RunControl`). `run()` blocks; the control methods may
    be called from any thread. `run_dir` is the directory its RunWriter keeps, named in RunStarted."""

    def __init__(
        self,
        config: Config,
        consumers: Iterable[Consumer] = (),
        data: Dataset | None = None,
        run_dir: str | None = None,
    ):
        self.config = config
        self.run_dir = run_dir
        tc = config.train
        self.device = resolve_device(tc.device)
        check_precision(tc.precision, self.device)
        self.governor = ThreadGovernor(tc.threads)  # before the data loads: it watches the load meanwhile
        check_fits(config, self.device)  # before anything is allocated: refuse what cannot fit
        try:
            self.data = data if data is not None else load_dataset(config.data, tc.seed, self.device)
            torch.manual_seed(tc.seed)  # model initialisation
            self.model = build_model(config.model, self.data.input_shape, self.data.num_outputs).to(self.device)
            dynamo_standin.defer()  # torch.optim would import torch's compiler: ~1 s before the first step
            self.optimizer = build_optimizer(tc.optimizer, self.model.parameters(), tc.lr, tc.momentum, tc.weight_decay)
        except (torch.OutOfMemoryError, MemoryError, RuntimeError) as exc:
            if type(exc) is RuntimeError and "can't allocate memory" not in str(exc):  # CPU allocator's OOM
                raise
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise TuitrainError(
                f"out of memory on {self.device} while loading the data and building the network "
                f"({first[:200]}); use a smaller network or fewer samples"
            ) from None
        self.loss_fn = LOSSES[self.data.task]()
        self.generator = torch.Generator(device=self.device).manual_seed(tc.seed)  # shuffling only
        self.consumers: list[Consumer] = list(consumers)
        self.epoch = 0  # epochs completed
        self.epoch_step = 0  # steps done inside the epoch in progress (non-zero after a mid-epoch stop)
        self.step = 0  # optimizer steps in all
        self.train_seconds = 0.0
        self.samples_seen = 0
        self.state: TrainerState = "idle"
        self._epoch_rng: torch.Tensor | None = None  # shuffle state at the start of the epoch in progress
        self._last_emit = 0.0  # perf_counter of the last StepProgress
        self._sample = inspection.sample_indices(self.data, seed=tc.seed)
        sample = self.data.train.x[:DEAD_SAMPLES] if len(self.data.train) else None
        self.recorder = Recorder(self.model, sample, enabled=tc.histories)
        self.flight = FlightRecorder(self.model, self.device)  # the divergence post-mortem's memory
        LoopControl.__init__(self)
        self._vitals = ProcessVitals()
        # more processes (tuitrain.runs.distributed replaces these): this rank's share of a batch, the
        # module that trains (a DistributedDataParallel wrapper), an epoch's sums over every rank
        self.world_size = 1
        self.train_model: nn.Module = self.model
        self.shard: Callable[[torch.Tensor, int], torch.Tensor] = lambda idx, step: idx
        self.reduce_epoch: Callable[[torch.Tensor], torch.Tensor] = lambda sums: sums
        self.exchange_window: Callable[..., tuple[torch.Tensor, torch.Tensor, int]] = lambda *window: window
        self.report_every = 1  # steps between reports when ranks must agree (time differs between them)

    def send(self, command: LoopCommand) -> None:
        """The loop's own control carries it out (at the next step boundary; some at once while idle)."""
        self.apply(command)

    def close(self) -> None:
        """Nothing to release: the run lives in this process."""

    def vitals(self) -> Vitals:
        return self._vitals.sample()

    # ------------------------------------------------------------------ events
    def _emit(self, event: Event) -> None:
        for consumer in self.consumers:
            consumer(event)

    def inspect(
        self, before: dict[str, torch.Tensor] | None = None, *, units: bool = False, sample: int = 0
    ) -> Inspection:
        """Parameter statistics and predictions now, or with `units` what each unit learned instead (test
        image `sample` stepped through: tuitrain.training.units); safe while the loop is not stepping."""
        start = time.perf_counter()
        epoch = self.epoch + 1 if self.epoch_step else self.epoch
        if units:  # the Units panel's look alone: its refreshes must cost training little
            found = Inspection(epoch, self.step, [], None, units=compute_units(self.model, self.data, sample))
        else:
            found = Inspection(
                epoch,
                self.step,
                inspection.param_stats(self.model, before),
                inspection.predictions(
                    self.model, self.data, self._sample, self.epoch, self.step, paused=self.state == "paused"
                ),
            )
        found.seconds = time.perf_counter() - start
        return found

    def find_lr_branch(self, steps: int) -> None:
        """The LR range test (tuitrain.training.lr_find) from the state now, as a side branch: on a copy of
        the network and the optimizer (its momentum or moments too) and a copy of the shuffling generator,
        with the global RNG (dropout) restored afterwards, so the run's weights, optimizer state, step,
        shuffle and metrics stay exactly as they were. Tells LrFound events: the curve as it grows, then
        the suggestion (or why there is none). It ends early once `finding_lr_ends()` says so."""
        from tuitrain.training.lr_find import RangeSettings, range_test

        start, settings, tc = self.step, RangeSettings(steps=steps), self.config.train
        if self.world_size > 1:
            self._emit(LrFound(start, [], 0, steps, stop="refused", message=SEVERAL_PROCESSES))
            return
        try:
            settings.check()
        except UsageError as exc:
            self._emit(LrFound(start, [], 0, steps, stop="refused", message=str(exc)))
            return
        curve: list[tuple[float, float]] = []
        last = time.perf_counter()

        def progress(taken: int, lr: float, loss: float, smoothed: float) -> None:
            nonlocal last
            curve.append((lr, smoothed))  # range_test tells finite losses only
            now = time.perf_counter()
            if now - last >= FIND_LR_INTERVAL and taken < steps:
                last = now
                self._emit(LrFound(start, list(curve), taken, steps, done=False))

        cuda = self.device.type == "cuda"
        devices = [self.device.index if self.device.index is not None else torch.cuda.current_device()] if cuda else []
        try:
            with torch.random.fork_rng(devices=devices):
                model, optimizer = self._copies()
                generator = torch.Generator(device=self.device)
                generator.set_state(self.generator.get_state())
                result = range_test(
                    model,
                    optimizer,
                    self.loss_fn,
                    self.data.train.x,
                    self.data.train.y,
                    batch_size=tc.batch_size,
                    settings=settings,
                    generator=generator,
                    precision=tc.precision,
                    progress=progress,
                    stop=self.finding_lr_ends,
                )
                del model, optimizer
        except Exception as exc:  # out of memory, say: the test failed, the run goes on
            first = (str(exc).strip().splitlines() or [""])[0][:300]
            message = f"the test failed: {type(exc).__name__}" + (f": {first}" if first else "")
            self._emit(LrFound(start, curve, len(curve), steps, stop="failed", message=message))
            return
        found = result.suggestion
        finite = [(lr, loss) for lr, loss in zip(result.lrs, result.smoothed, strict=True) if math.isfinite(loss)]
        notes = "; ".join(found.notes)
        self._emit(LrFound(start, finite, len(result.lrs), steps, found.lr, found.rule, result.stop, notes))

    def _copies(self) -> tuple[nn.Module, torch.optim.Optimizer]:
        """A new network and optimizer in this run's state (the optimizer's state deep-copied: loading it
        would otherwise share the run's momentum tensors)."""
        tc = self.config.train
        model = build_model(self.config.model, self.data.input_shape, self.data.num_outputs).to(self.device)
        model.load_state_dict(self.model.state_dict())
        optimizer = build_optimizer(tc.optimizer, model.parameters(), self.lr, tc.momentum, tc.weight_decay)
        optimizer.load_state_dict(copy.deepcopy(self.optimizer.state_dict()))
        return model, optimizer

    # ------------------------------------------------------------------ the loop
    def run(self, consumer: Consumer | None = None) -> RunEnded:
        """Train to the end; `consumer` gets this run's events after the trainer's own consumers."""
        if consumer is not None:
            self.consumers.append(consumer)
        tc, d = self.config.train, self.data
        self.state = "running"
        steps = math.ceil(len(d.train) / tc.batch_size)
        try:
            return self._train(steps)
        except torch.OutOfMemoryError:
            if self._has_finished():
                raise
            message = f"out of memory on {self.device}: try a smaller --batch-size"
            return self._finish(self._ended("failed", None, message))
        except Exception as exc:  # a damaged optimizer state, an unwritable tensorboard/: failed, saying why
            if self._has_finished():  # a consumer failed on the end itself: nothing more to tell it
                raise
            first = (str(exc).strip().splitlines() or [""])[0][:300]
            message = f"training failed: {type(exc).__name__}" + (f": {first}" if first else "")
            return self._finish(self._ended("failed", None, message))

    def _has_finished(self) -> bool:
        return self.state == "finished"

    def _train(self, steps: int) -> RunEnded:
        tc, d = self.config.train, self.data
        self._emit(
            RunStarted(
                preset=self.config.name,
                config=self.config.to_dict(),
                device=str(self.device),
                task=d.task,
                train_samples=len(d.train),
                valid_samples=len(d.valid),
                test_samples=len(d.test),
                steps_per_epoch=steps,
                epochs=tc.epochs,
                start_epoch=self.epoch,
                parameters=parameter_count(self.model),
                data_source=d.source,
                run_dir=self.run_dir,
                threads=self.governor.apply(),
                world_size=self.world_size,
            )
        )
        self._record(self.recorder.record(self.step, self.epoch))  # the start: what scrubbing back reaches
        status: EndStatus = "completed"
        message = ""
        while self.epoch < tc.epochs:
            result = self._train_epoch(steps)
            if isinstance(result, RunEnded):
                return self._finish(result)
            if result is None:
                status = self._stop_status or "interrupted"
                break
            train, seconds, samples = result
            self.epoch, self.epoch_step = self.epoch + 1, 0
            self._epoch_rng = None  # the next epoch's shuffle starts from the generator's state
            valid = self.evaluate(d.valid)
            if not math.isfinite(train.loss) or not math.isfinite(valid.loss):
                return self._finish(self._diverged())
            self._emit(
                EpochEnded(
                    self.epoch,
                    self.step,
                    train,
                    valid,
                    self.lr,
                    seconds,
                    samples / max(seconds, 1e-9),
                    self.train_seconds,
                )
            )
        self.state = "testing"
        test = self.evaluate(d.test)
        if status == "completed" and not math.isfinite(test.loss):
            return self._finish(self._diverged())
        return self._finish(self._ended(status, test, message))

    def _ended(self, status: EndStatus, test: Metrics | None, message: str = "") -> RunEnded:
        return RunEnded(
            status,
            self.epoch,
            self.step,
            test,
            self.train_seconds,
            self.samples_seen / max(self.train_seconds, 1e-9),
            message,
        )

    def _diverged(self) -> RunEnded:
        ended = self._ended(
            "diverged",
            None,
            f"loss became NaN or infinite at step {self.step} (lr {self.lr:g}); "
            f"try a lower learning rate, e.g. --lr {self.lr / 10:g}",
        )
        try:  # before anything else is written: where it started, replayed from the last good state
            ended.diagnosis = self.flight.diagnose(self)
        except Exception as exc:  # the post-mortem must never keep a run from ending
            ended.diagnosis = None
            log.warning("divergence post-mortem failed: %s: %s", type(exc).__name__, exc)
        return ended

    def _record(self, record: HistoryRecord | None) -> None:
        if record is not None:
            self._emit(record)

    def _finish(self, ended: RunEnded) -> RunEnded:
        with self._lock:  # an LR range test asked for and never started: answered, so no one waits for it
            self.refuse_find_lr(ENDED)
        if ended.status != "failed":  # the end, so the history reaches it (not after running out of memory)
            self._record(self.recorder.record(self.step, ended.epoch))
        self.state = "finished"
        self._emit(ended)
        return ended

    def _train_epoch(self, steps: int) -> tuple[Metrics, float, int] | RunEnded | None:
        """One pass over the training split; None when stopped, RunEnded when diverged."""
        tc, d, task = self.config.train, self.data, self.data.task
        x, y, n, bs = d.train.x, d.train.y, len(d.train), tc.batch_size
        if self.epoch_step == 0 or self._epoch_rng is None:
            self._epoch_rng = self.generator.get_state()
        else:  # resuming mid-epoch: replay the same shuffle and skip the steps already done
            self.generator.set_state(self._epoch_rng)
        order = torch.randperm(n, device=self.device, generator=self.generator)
        zero = torch.zeros((), device=self.device)
        loss_sum, correct = zero.clone(), zero.clone()  # accumulate on the device: no per-step sync
        reported_loss, reported_correct, window_n = zero, zero, 0  # the sums at the last report
        epoch_samples, epoch_seconds = 0, 0.0
        tick = time.perf_counter()
        last_emit = self._last_emit  # kept across epochs: short epochs still get step events
        model, opt, loss_fn, flight = self.train_model, self.optimizer, self.loss_fn, self.flight
        model.train()
        if flight.keep_due(tick):  # known good: the checks before this epoch found the loss finite
            flight.keep(self, tick)
        for i in range(self.epoch_step, steps):
            if self._attention:
                now = time.perf_counter()
                self.train_seconds += now - tick
                epoch_seconds += now - tick
                if not self._handle_controls():
                    return None
                tick = time.perf_counter()
            asked = self.take_inspections() if self._inspections else None
            before = self._snapshot(asked) if asked else None
            self.recorder.before_step()
            idx = self.shard(order[i * bs : (i + 1) * bs], self.step)
            xb, yb = x.index_select(0, idx), y.index_select(0, idx)
            with autocast(tc.precision, self.device):
                logits = model(xb).float()  # the loss and its gradient in float32 whatever the precision
            loss = loss_fn(logits, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            flight.push(self.step + 1, loss)
            b = idx.shape[0]
            with torch.no_grad():  # the epoch's sums only (two ops a step); a report's window is their growth
                loss_sum.add_(loss.detach(), alpha=b)
                hits = correct_count(task, logits, yb)
                if hits is not None:
                    correct += hits
            window_n += b
            self.step += 1
            self.epoch_step = i + 1
            self.samples_seen += min(bs, n - i * bs)  # every rank's share of the batch
            epoch_samples += b
            if asked:
                for request in asked:
                    self._emit(self.inspect(before, units=request.units, sample=request.sample))
            now = time.perf_counter()
            self._record(self.recorder.after_step(self.step, self.epoch + 1, now))
            if self.world_size > 1:  # ranks report (and agree to stop) together, at the same steps
                due = self.step % self.report_every == 0 or i + 1 == steps
            else:
                # a request (pause, single step, stop, learning rate) waits: report first, so what it shows is now
                due = now - last_emit >= PROGRESS_INTERVAL or self._attention
            if due:
                self.train_seconds += now - tick
                epoch_seconds += now - tick
                tick = last_emit = self._last_emit = now
                window_loss, window_correct = loss_sum - reported_loss, correct - reported_correct
                reported_loss, reported_correct = loss_sum.clone(), correct.clone()
                if self.world_size > 1:
                    window_loss, window_correct, window_n = self.exchange_window(window_loss, window_correct, window_n)
                mean_loss = window_loss.item() / window_n  # the one host sync per interval
                if not math.isfinite(mean_loss):
                    return self._diverged()
                if flight.keep_due(now):  # the loss so far is finite: a good state to replay from
                    flight.keep(self, now)
                acc = window_correct.item() / window_n if task != "regression" else None
                self._emit(
                    StepProgress(
                        self.epoch + 1,
                        self.step,
                        i + 1,
                        mean_loss,
                        acc,
                        self.lr,
                        self.samples_seen / max(self.train_seconds, 1e-9),
                        self.train_seconds,
                    )
                )
                window_n = 0
                self.governor.tick()
                tick = time.perf_counter()
        end = time.perf_counter()
        self.train_seconds += end - tick
        epoch_seconds += end - tick
        if self.world_size > 1:  # every rank's share: exact epoch metrics, one exchange per epoch
            loss_sum, correct, all_samples = self.reduce_epoch(torch.stack([loss_sum, correct, zero + epoch_samples]))
            epoch_samples = int(all_samples.item())
        total = max(epoch_samples, 1)
        train = Metrics(loss_sum.item() / total, correct.item() / total if task != "regression" else None)
        return train, epoch_seconds, epoch_samples

    def _snapshot(self, asked: list[RequestInspection]) -> dict[str, torch.Tensor] | None:
        """The weights before the step, for the update ratios of a parameters inspection (none for units)."""
        if all(request.units for request in asked):
            return None
        return {name: p.detach().float().clone() for name, p in self.model.named_parameters()}

    @torch.inference_mode()
    def evaluate(self, split: Any) -> Metrics:
        was_training = self.model.training
        self.model.eval()
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device)
        for xb, yb in zip(split.x.split(EVAL_BATCH), split.y.split(EVAL_BATCH), strict=True):
            with autocast(self.config.train.precision, self.device):  # measured as it trains
                logits = self.model(xb).float()
            loss_sum += self.loss_fn(logits, yb) * xb.shape[0]
            hits = correct_count(self.data.task, logits, yb)
            if hits is not None:
                correct += hits
        self.model.train(was_training)
        n = max(len(split), 1)
        return Metrics(loss_sum.item() / n, correct.item() / n if self.data.task != "regression" else None)

    # ------------------------------------------------------------------ checkpoint state
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue this run exactly (tensors and plain values only)."""
        return {
            "config": self.config.to_dict(),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "epoch": self.epoch,
            "epoch_step": self.epoch_step,
            "step": self.step,
            "train_seconds": self.train_seconds,
            "samples_seen": self.samples_seen,
            # an epoch in progress (even one stopped before its first step) replays its own shuffle
            "world_size": self.world_size,  # a resume must split batches the same way
            "shuffle_rng": (self._epoch_rng if self._epoch_rng is not None else self.generator.get_state()).cpu(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        trained_by = state.get("world_size", 1)
        if trained_by != self.world_size:
            raise UsageError(
                f"this run was trained by {trained_by} process(es); resume it with the same number "
                f"({'--nproc ' + str(trained_by) if trained_by > 1 else 'no --nproc'}), not {self.world_size}"
            )
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise TuitrainError(f"checkpoint does not fit this network: {str(exc).splitlines()[0]}") from None
        self.epoch, self.epoch_step, self.step = state["epoch"], state["epoch_step"], state["step"]
        self.train_seconds, self.samples_seen = state["train_seconds"], state["samples_seen"]
        self.generator.set_state(state["shuffle_rng"])
        self._epoch_rng = state["shuffle_rng"] if self.epoch_step else None
