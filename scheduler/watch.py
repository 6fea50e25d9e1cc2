"""Follow each node's container events, so a replica's end is seen at once.

The leader's pass follows every replica on each tick (``scheduler.follow``); the
events stream makes that pass run as soon as one of this instance's containers dies
or is removed, instead of up to a tick later (a start needs no hint: the pass that
starts a container inspects it). An event is only a hint to look:
state, StartedAt and FinishedAt still come from ``inspect``, so a missed or
repeated event costs at most one tick, never a wrong state.

One daemon thread per node URL; ``sync`` starts threads for new URLs and
lets the others end. A thread reconnects after its stream ends (the
backend's ``idle`` timeout, a restart of the node's Podman) from the last
event it saw, waiting ``retry`` seconds after a failure.
"""

import logging
import threading

from scheduler.backend import INSTANCE_LABEL, BackendError

log = logging.getLogger(__name__)

ENDS = {"died", "removed"}


class EventWatcher:
    """``backend_for(url)`` gives a node's ``ContainerBackend``; ``on_event(event)`` is called
    (from a watcher thread) when a container of the instance ``sync`` named dies or is
    removed."""

    def __init__(self, backend_for, on_event, idle=10.0, retry=2.0):
        self.backend_for = backend_for
        self.on_event = on_event
        self.instance = None
        self.idle = idle
        self.retry = retry
        self._watching = {}  # url -> the Event that tells its thread to end
        self._lock = threading.Lock()

    @property
    def urls(self):
        with self._lock:
            return set(self._watching)

    def sync(self, urls, instance):
        """Watch exactly ``urls`` (e.g. the enabled nodes) for containers of Hourglass instance
        ``instance``; returns at once."""
        urls = set(urls)
        with self._lock:
            self.instance = instance
            for url in set(self._watching) - urls:
                self._watching.pop(url).set()
            for url in urls - set(self._watching):
                done = self._watching[url] = threading.Event()
                threading.Thread(target=self._follow, args=(url, done), daemon=True,
                                 name=f"events {url}").start()

    def stop(self):
        self.sync((), self.instance)

    def _follow(self, url, done):
        since = None
        while not done.is_set():
            try:
                for event in self.backend_for(url).events(since_ns=since, idle=self.idle):
                    since = event.at.ns
                    if done.is_set():
                        return
                    if (event.kind in ENDS
                            and event.labels.get(INSTANCE_LABEL) == self.instance):
                        self.on_event(event)
            except BackendError as error:
                log.debug("events of %s: %s; again in %ss", url, error, self.retry)
                done.wait(self.retry)
            except Exception:
                log.exception("following the events of %s failed; again in %ss", url, self.retry)
                done.wait(self.retry)
