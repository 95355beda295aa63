"""Source ``process``: RSS, USS, threads, open fds and CPU time of tritonserver and every descendant.

Python-backend stubs hold Python models' memory, so a leaking model shows in its stub's series (label ``name`` is the
stub's instance name, ``tritonserver`` for the server). The tree comes from :class:`ServerTarget` (psutil); the
values from kept-open ``/proc`` files (:mod:`rmt.collect.procfs`: one ``pread`` per process per read). A value that
cannot be read is NaN with a note, never 0; no server at all, or a server that ended, is a gap.

Cadences: every ``detail_every_s`` (a *full* tick) the RSS, threads, fds and CPU time of every process and the
tree's totals; at every tick between, the RSS of tritonserver and of each process that was active within the last
``detail_every_s`` — its RSS moved, or its CPU time did (it served requests) — so a stub that serves or leaks is
followed at the full rate and its healthy twin under the same traffic too, while an idle one (most stubs of a zoo,
most of the time) is read at the full ticks only, and is back at the full rate from the full tick that sees it
active. Each record holds the processes it read (none is repeated or invented); the per-tick loop is the sidecar's
main cost (per-process figures: docs/benchmarks.md).

What can block or costs milliseconds runs in a helper thread, so a tick never waits on it: re-reading the tree, and
USS every ``uss_every_s`` at least (a kernel page walk over each process' mappings, taking its memory-map lock:
milliseconds for tritonserver, far more for one that maps CUDA).
A round that cost more CPU than :data:`USS_CPU_SHARE` of a core over ``uss_every_s`` makes the next one wait until
it fits that share (the round's CPU time ÷ the share). A USS round's values go into the sample of the first tick
after the round ended — at most one interval after they were read; a round that does not end (a process stuck with
its memory map locked) delays only the USS series, with a note.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import psutil

from rmt.collect.procfs import ProcFiles
from rmt.collect.series import Labels, Point, Reading, labels_of
from rmt.collect.source import SourceInfo
from rmt.collect.target import ServerTarget, TrackedProcess
from rmt.core.errors import SourceUnavailable

log = logging.getLogger(__name__)
SOURCE = "process"
USS_CPU_SHARE = 0.0005
"""At most this share of one core goes to USS page walks: the next round waits the last one's CPU time ÷ this."""


#: The per-process series read every ``detail_every_s``, in the order :meth:`ProcessTreeSource._details` reads them.
DETAIL_MEASURES = ("process_threads_count", "process_open_fds_count", "process_cpu_s")


def process_labels(tp: TrackedProcess) -> Labels:
    """The labels of a process' series: pid, name, role, and model/instance for stubs."""
    info = tp.info
    return labels_of(pid=info.pid, name=info.name, role=info.role, model=info.model, instance=info.instance)


@dataclass(eq=False)
class _Member:
    """A process of the tree as this source reads it: its labels and its kept-open ``/proc`` files."""

    tp: TrackedProcess
    labels: Labels
    files: ProcFiles | None
    """None once the process ended (or when its ``/proc`` files cannot be opened: see ``error``)."""
    error: str = ""
    """Why ``files`` is None while the process lives (e.g. ``/proc`` mounted with ``hidepid``)."""
    rss: float = math.nan
    """The RSS of its latest read."""
    cpu_s: float = math.nan
    """Its CPU time at the latest full tick."""
    moved_at: float = -math.inf
    """When (monotonic s) a read last found its RSS, or a full tick its CPU time, different from the read before (or
    read it first)."""


@dataclass
class _UssRound:
    """One USS page walk over the tree, done by the helper thread."""

    members: list[_Member]
    values: list[float] = field(default_factory=list)
    """USS of each member (NaN: unreadable; -1: the process ended), filled by the helper."""
    notes: list[str] = field(default_factory=list)
    asked_at: float = 0.0
    cpu_s: float = 0.0
    """CPU time the helper spent on the round."""


class _Helper:
    """The process source's slow work, off the sampling thread: tree re-reads (a walk over every process of the
    host, and command lines that can block behind a process' memory-map lock) and USS page walks (which take that
    lock). Woken only when there is work: at most once per ``uss_every_s`` and when the tree may have changed."""

    def __init__(self, target: ServerTarget, name: str) -> None:
        self.target = target
        self._cv = threading.Condition()
        self._want_tree = False
        self._uss: _UssRound | None = None
        """The round asked for or running; moved to ``_done`` when finished."""
        self._done: _UssRound | None = None
        self._stop = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def stop(self, timeout_s: float) -> None:
        """Stop and join the thread (a read blocked in the kernel is left behind, with a warning)."""
        with self._cv:
            self._stop = True
            self._cv.notify()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                log.warning("rmt collector: %s still in a read after stop", self._thread.name)

    def ask_tree(self) -> None:
        """Re-read the tree (the sampling thread picks it up from the target at its next tick)."""
        with self._cv:
            if not self._want_tree:
                self._want_tree = True
                self._cv.notify()

    def ask_uss(self, members: list[_Member], now: float) -> _UssRound | None:
        """Start a USS round over ``members``; returns the round still running instead, if any."""
        with self._cv:
            if self._uss is not None:
                return self._uss
            self._uss = _UssRound(list(members), asked_at=now)
            self._cv.notify()
            return None

    def take_uss(self) -> _UssRound | None:
        """The round finished since the last call, if any."""
        with self._cv:
            done, self._done = self._done, None
            return done

    def _run(self) -> None:
        while True:
            with self._cv:
                while not (self._stop or self._want_tree or self._uss is not None):
                    self._cv.wait()
                if self._stop:
                    return
                want_tree, self._want_tree = self._want_tree, False
                job = self._uss
            if want_tree:
                try:
                    self.target.processes()
                except Exception:  # a bug must not end the helper: the next request tries again
                    log.exception("rmt collector: re-reading the process tree failed")
            if job is not None:
                cpu0 = time.thread_time()
                try:
                    for member in job.members:
                        job.values.append(_uss_of(member, job.notes))
                except Exception:  # a bug must not end the helper: the rest of the round is NaN
                    log.exception("rmt collector: a USS round failed")
                finally:
                    job.values += [math.nan] * (len(job.members) - len(job.values))
                    job.cpu_s = time.thread_time() - cpu0
                    with self._cv:
                        self._uss, self._done = None, job


def _uss_of(member: _Member, notes: list[str]) -> float:
    """USS of one member: NaN with a note when unreadable, -1 when the process ended."""
    files = member.files  # the sampling thread may drop it meanwhile: reads go by path, closed files are fine
    if files is None:
        return math.nan if member.error else -1.0
    try:
        return float(files.uss_bytes())
    except PermissionError:
        notes.append(f"uss unreadable for pid {files.pid} (AccessDenied: run as the server's user)")
    except ProcessLookupError:
        return -1.0
    except (OSError, ValueError, IndexError) as exc:
        notes.append(f"uss of pid {files.pid}: {type(exc).__name__}")
    return math.nan


class ProcessTreeSource:
    """Reads the Triton process tree of a :class:`ServerTarget` each tick (``/proc`` through :mod:`procfs`)."""

    name = SOURCE
    inline = True
    """A tick reads kept-open ``/proc`` files that never block (the slow work is the helper's): it may share the
    collector's sampling thread with the other inline sources."""

    def __init__(self, target: ServerTarget, *, timeout_s: float = 1.0, detail_every_s: float = 1.0,
                 uss_every_s: float = 30.0, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.target = target
        self.timeout_s = timeout_s
        self.detail_every_s = detail_every_s
        self.uss_every_s = uss_every_s
        self._monotonic = monotonic
        self._last_detail = -math.inf
        self._last_uss = -math.inf
        self.uss_interval_s = uss_every_s
        """The current USS cadence: ``uss_every_s``, or longer after a round that cost more than its share."""
        self.uss_round_cpu_s = math.nan
        """CPU time of the latest finished USS round."""
        self._tree: tuple[TrackedProcess, ...] = ()
        self._members: list[_Member] = []
        self._tree_labels: Labels = ()
        self._known: dict[psutil.Process, _Member] = {}
        """By psutil handle (hashed by pid and creation time): a recycled PID is a new member."""
        self._layouts: dict[tuple[bool, tuple[_Member, ...]], list[Point]] = {}
        """The layout of each (full tick?, members read) seen since the tree last changed: the same list object
        while the tree and the members read stay the same."""
        self._helper: _Helper | None = None

    def open(self) -> SourceInfo:
        """Always available; the server may come later. Reads the tree once and starts the helper thread."""
        self.target.processes()
        self._helper = _Helper(self.target, f"rmt-{SOURCE}-helper")
        self._helper.start()
        return SourceInfo(details={"detail_every_s": self.detail_every_s, "uss_every_s": self.uss_every_s,
                                   "uss_cpu_share": USS_CPU_SHARE,
                                   "rss_every_tick": "tritonserver and the processes whose RSS or CPU time moved "
                                                     "within detail_every_s; every process every detail_every_s",
                                   "server": self.target.describe()})

    def close(self) -> None:
        """Stop the helper and close every kept-open ``/proc`` file."""
        if self._helper is not None:
            self._helper.stop(max(1.0, self.timeout_s))
            self._helper = None
        self._sync(())

    def _sync(self, tree: tuple[TrackedProcess, ...]) -> None:
        """Members for a newly read tree: keep the files of processes still in it, close the others'."""
        known: dict[psutil.Process, _Member] = {}
        for tp in tree:
            member = self._known.pop(tp.proc, None)
            if member is None:
                member = _Member(tp, process_labels(tp), None)
                try:
                    member.files = ProcFiles(tp.proc.pid)
                except ProcessLookupError:  # ended already: left out until the tree is read again
                    pass
                except OSError as exc:
                    member.error = f"pid {tp.proc.pid}: /proc unreadable ({type(exc).__name__})"
            known[tp.proc] = member
        for member in self._known.values():
            if member.files is not None:
                member.files.close()
        self._known = known
        self._members = list(known.values())
        self._layouts.clear()
        self._tree = tree
        self._tree_labels = labels_of(server_pid=tree[0].proc.pid) if tree else ()

    def read(self) -> Reading:
        """One read of the tree: RSS (of every process at a full tick, else of the server and the moving ones), and
        the details, the tree's totals and USS when due."""
        helper = self._helper
        if helper is None:
            raise SourceUnavailable("the process source is not open")
        tree = self.target.cached_processes()
        now = self._monotonic()
        full = now - self._last_detail >= self.detail_every_s
        if (full or not tree) and self.target.refresh_due():  # once per detail period: it checks /dev/shm
            helper.ask_tree()
        if not tree:
            raise SourceUnavailable(f"no tritonserver process ({self._where()})")
        if tree is not self._tree:
            self._sync(tree)
        notes: list[str] = []
        values: list[float] = []
        """RSS of each member read, then (on a full tick) threads, fds and CPU of each member detailed."""
        rss_total = 0.0
        gone = 0
        read: list[tuple[_Member, ProcFiles]] = []
        ended = 0
        quiet_since = now - self.detail_every_s
        for member in self._members:  # RSS first, in one tight pass: one snapshot
            files = member.files
            if files is None:
                if member.error:
                    notes.append(member.error)
                    continue
                if member.tp.info.role == "server":  # still the cached tree: the helper is looking again
                    helper.ask_tree()
                    raise SourceUnavailable(f"tritonserver (pid {member.tp.proc.pid}) has ended")
                gone += 1
                continue
            if not full and member.moved_at < quiet_since and member.tp.info.role != "server":
                continue  # idle for a detail period at least: read again at the next full tick
            try:
                rss = float(files.rss_bytes())
            except ProcessLookupError:  # a zombie or gone: read no more (a tree read that keeps it asks once)
                files.close()
                member.files = None
                if member.tp.info.role == "server":
                    self.target.invalidate()
                    helper.ask_tree()
                    pid = member.tp.proc.pid
                    raise SourceUnavailable(f"tritonserver (pid {pid}) ended during the read") from None
                gone += 1
                ended += 1
                continue
            except (OSError, ValueError, IndexError) as exc:
                notes.append(f"pid {member.tp.proc.pid}: {type(exc).__name__}")
                continue
            if rss != member.rss:
                member.rss, member.moved_at = rss, now
            rss_total += rss
            values.append(rss)
            read.append((member, files))
        if full:
            for member, files in read:
                try:
                    details = self._details(files, notes)
                    values += details
                    if details[2] != member.cpu_s:  # it worked (served requests): read its RSS at every tick
                        member.cpu_s, member.moved_at = details[2], now
                except (OSError, ValueError, IndexError) as exc:  # ended since its RSS: NaN this time
                    notes.append(f"details of pid {member.tp.proc.pid}: {type(exc).__name__}")
                    values += [math.nan] * len(DETAIL_MEASURES)
            values.append(rss_total)
            values.append(float(len(tree) - gone))
            self._last_detail = now
        if ended:
            self.target.invalidate()
            helper.ask_tree()
            notes.append(f"{ended} process(es) ended during the read")
        layout = self._layout(tuple(m for m, _ in read), full)
        uss = self._uss_points(helper, now, notes)
        if uss:  # every uss_every_s: this tick's points are the layout's and the USS round's
            points = [p._replace(value=v) for p, v in zip(layout, values, strict=True)]
            return Reading(points + uss, "; ".join(notes))
        return Reading(note="; ".join(notes), layout=layout, values=values)

    def _layout(self, read: tuple[_Member, ...], full: bool) -> list[Point]:
        """The series of a tick that read ``read`` (a full tick: with their details and the tree's totals): the same
        list object as long as the tree and the members read stay the same."""
        key = (full, read)
        cached = self._layouts.get(key)
        if cached is not None:
            return cached
        nan = math.nan
        layout = [Point("process_rss_bytes", m.labels, nan) for m in read]
        if full:
            for m in read:
                layout += [Point(measure, m.labels, nan) for measure in DETAIL_MEASURES]
            tree_labels = self._tree_labels
            layout += [Point("process_tree_rss_bytes", tree_labels, nan),
                       Point("process_tree_processes_count", tree_labels, nan)]
        if len(self._layouts) > 64:  # the moving set keeps changing: keep the cache small
            self._layouts.clear()
        self._layouts[key] = layout
        return layout

    def _uss_points(self, helper: _Helper, now: float, notes: list[str]) -> list[Point]:
        """The USS of the round the helper finished since the last tick (empty if none); starts the next when due."""
        points: list[Point] = []
        done = helper.take_uss()
        if done is not None:
            total = 0.0
            for member, value in zip(done.members, done.values, strict=True):
                if value >= 0 or math.isnan(value):  # -1: the process ended
                    if self._known.get(member.tp.proc) is member:
                        points.append(Point("process_uss_bytes", member.labels, value))
                    total += value
            if done.members == self._members:  # the sum belongs to this tree (not one read before a restart)
                points.append(Point("process_tree_uss_bytes", self._tree_labels, total))
            notes += done.notes
            self.uss_round_cpu_s = done.cpu_s
            interval = max(self.uss_every_s, done.cpu_s / USS_CPU_SHARE)
            if interval != self.uss_interval_s:
                log.debug("rmt collector: USS round cost %.1f ms of CPU: next rounds every %.0f s",
                          1e3 * done.cpu_s, interval)
            self.uss_interval_s = interval
        if now - self._last_uss >= self.uss_interval_s:
            running = helper.ask_uss(self._members, now)
            if running is None:
                self._last_uss = now
            elif now - running.asked_at > 2 * self.uss_interval_s:
                notes.append(f"uss: the page walk started {now - running.asked_at:.0f} s ago has not ended "
                             f"(a process' memory map is locked)")
        return points

    @staticmethod
    def _details(files: ProcFiles, notes: list[str]) -> list[float]:
        """Threads, open fds and CPU time of one process (the order of :data:`DETAIL_MEASURES`)."""
        threads, cpu_s = files.threads_and_cpu_s()
        try:
            fds = float(files.open_fds())
        except PermissionError:
            notes.append(f"open fds unreadable for pid {files.pid} (AccessDenied)")
            fds = math.nan
        return [float(threads), fds, cpu_s]

    def _where(self) -> str:
        facts = self.target.describe()
        if facts.get("http_port"):
            return f"waiting for a server listening on port {facts['http_port']}"
        return f"pid {facts.get('pid')} is gone"
