"""Why a task waits or stopped, in words: the reasons Hourglass stores and their sentences.

The portal stores a few reasons of its own in English (``SUBMITTED``... ``DRAINED``, their
words in ``PORTAL``). The scheduler stores a pending task's reason as JSON (``{"code",
"params"}``, see ``stored``), the sentences of ``scheduler.placement``'s reason codes; the
portal shows it in the reader's language with ``render`` (``task_views.reason_text``). The
sentences live here, on the portal's side, free of Flask and the database, so that both
halves use the same ones and the translation catalog has them.
"""

import json


def N_(text):
    """Marks ``text`` for the translation catalog; it is translated when shown."""
    return text


SUBMITTED, STOPPED_BY_YOU = "submitted", "stopped by you"
BALANCE_EXHAUSTED = "balance exhausted"
CULLED = "stopped after being idle"  # a notebook's idle culling (scheduler.culling)
DRAINED = "its node is draining"  # the miner drains a node: its work moves (``tasks.move``)
RUN_TIME_REACHED = "max run time reached"  # its maximum run time (``portal.run_limits``)
# The reasons the portal stores (in English), shown in the reader's language.
PORTAL = {SUBMITTED: N_("submitted"), STOPPED_BY_YOU: N_("stopped by you"),
          BALANCE_EXHAUSTED: N_("balance exhausted"), CULLED: N_("stopped after being idle"),
          DRAINED: N_("its node is draining"),
          RUN_TIME_REACHED: N_("stopped: its maximum run time was reached")}

# The sentences of the scheduler's pending reasons (``scheduler.placement``), by code.
TEXTS = {
    "no_pool": N_("no pool you may use"),
    "no_ready_node": N_("no Ready node in pool %(pool)s"),
    "fits_no_node": N_("spec fits no Ready node in pool %(pool)s"),
    "larger_than_pool": N_("needs %(needed)s %(unit)s, more than pool %(pool)s has in all "
                           "(%(total)s)"),
    "task_above_chip_limit": N_("needs %(needed)s chips, more than your limit of %(limit)s "
                                "in pool %(pool)s"),
    "task_above_replica_limit": N_("needs %(needed)s replicas, more than your limit of "
                                   "%(limit)s running in pool %(pool)s"),
    "over_chip_limit": N_("over your chip limit in pool %(pool)s (%(in_use)s of %(limit)s in "
                          "use, this task needs %(needed)s)"),
    "over_replica_limit": N_("over your running-replica limit in pool %(pool)s (%(in_use)s of "
                             "%(limit)s running, this task needs %(needed)s)"),
    "behind_older_task": N_("waiting behind task %(task_id)s, which has waited more than "
                            "%(minutes)s minutes for room in pool %(pool)s"),
    "waiting_for_resource": N_("waiting for %(needed)s free %(unit)s in pool %(pool)s "
                               "(%(free)s free now)"),
    "balance_low": N_("your balance (%(balance)s %(currency)s) does not cover %(minutes)s "
                      "minutes of this task (%(needed)s %(currency)s); ask your miner to "
                      "recharge"),
    "no_peer_port": N_("waiting for a free node port at %(address)s: this task's replicas span "
                       "nodes and need one each (HOURGLASS_PEER_PORTS)"),
    "waiting_for_room": N_("waiting for room in pool %(pool)s: enough is free in all, but not "
                           "on nodes that can hold these replicas"),
    # A Slurm pool's task waits for its job (``scheduler.slurm_jobs``): Slurm's reason.
    "slurm_submitting": N_("being submitted to Slurm partition %(partition)s"),
    "slurm_resources": N_("waiting for resources in partition %(partition)s"),
    "slurm_priority": N_("waiting behind higher-priority jobs in partition %(partition)s"),
    "slurm_nodes_unavailable": N_("waiting: the nodes it needs in partition %(partition)s are "
                                  "unavailable (down, drained or reserved)"),
    "slurm_over_limit": N_("waiting: it is above a limit of partition %(partition)s "
                           "(Slurm: %(reason)s)"),
    "slurm_waiting": N_("waiting in partition %(partition)s (Slurm: %(reason)s)"),
    "slurm_silent": N_("waiting: Slurm cluster %(cluster)s does not answer (%(detail)s)"),
    "slurm_refused_for_now": N_("waiting: Slurm refused its job for now, trying again "
                                "(%(detail)s)"),
    "slurm_unusable": N_("Slurm started its job, but Hourglass cannot use what it gave yet: "
                         "%(detail)s"),
}
# The sentences of a replica's moves (``scheduler.transitions``), by code; the values carry
# names, times and Podman's own (English) words.
REPLICA_TEXTS = {
    "placed_on": N_("placed on %(node)s"),
    "container_started": N_("container started"),
    "exited": N_("exited with code %(code)s"),
    "exited_oom": N_("exited with code %(code)s (out of memory)"),
    "stopped_before_start": N_("stopped before it started"),
    "node_removed_before_start": N_("its node was removed before it started"),
    "could_not_start": N_("could not start: %(detail)s"),
    "start_no_answer": N_("could not start: node %(node)s did not answer %(tries)s tries "
                          "(%(detail)s)"),
    "node_removed": N_("its node was removed (last seen alive %(seen)s)"),
    "node_silent": N_("node %(node)s not answering since %(since)s (%(detail)s)"),
    "container_vanished": N_("its container vanished (last seen alive %(seen)s)"),
    "slurm_refused": N_("Slurm refused its job: %(detail)s"),
    "slurm_job_ended": N_("its Slurm job %(job)s ended (%(state)s)"),
    "slurm_job_ending": N_("its Slurm job %(job)s was ended by Slurm (a time limit, scancel or "
                           "a node failure)"),
}
TEXTS.update(REPLICA_TEXTS)
UNITS = {"cpu": N_("CPU"), "memory": N_("MiB of memory")}
MAX_STORED = 512  # the reason columns' length


def _number(resource, amount):
    return f"{amount / 1000:g}" if resource == "cpu" else f"{amount:g}"


def render(code, params, kind_names=None, translate=str):
    """The sentence for reason ``code``; ``kind_names`` maps a chip kind to the miner's
    name for it; ``translate`` is gettext in the portal, nothing in the scheduler."""
    values = dict(params)
    resource = values.get("resource")
    if resource is not None:
        unit = UNITS.get(resource)
        values["unit"] = translate(unit) if unit else (kind_names or {}).get(resource, resource)
        for key in ("needed", "free", "total"):
            if key in values:
                values[key] = _number(resource, values[key])
    if "minutes" in values:
        values["minutes"] = f"{values['minutes']:g}"
    return translate(TEXTS[code]) % values


def stored(code, params):
    """What the scheduler writes into ``Task.reason`` for a pending task, and into a
    replica's reason and events: at most ``MAX_STORED`` characters, the longest text value
    shortened (with "…") where it would not fit."""
    params = dict(params)
    text = json.dumps({"code": code, "params": params}, sort_keys=True)
    while len(text) > MAX_STORED:
        longest = max((k for k, v in params.items() if isinstance(v, str) and v), default=None,
                      key=lambda k: len(params[k]))
        if longest is None:
            break
        value = params[longest]
        params[longest] = value[:max(0, len(value) - (len(text) - MAX_STORED) - 1)] + "…"
        if params[longest] == value:
            break
        text = json.dumps({"code": code, "params": params}, sort_keys=True)
    return text


def loads(text):
    """(code, params) from a stored reason, or None for a plain sentence (the portal's own,
    Podman's, or a row from before reasons were stored as codes)."""
    if not text.startswith("{"):
        return None
    try:
        data = json.loads(text)
        code, params = data["code"], data["params"]
    except (ValueError, KeyError, TypeError):
        return None
    return (code, params) if code in TEXTS and isinstance(params, dict) else None


def english(text):
    """A stored reason as an English sentence (logs, tests); a plain one as it is."""
    parsed = loads(text or "")
    return render(*parsed) if parsed else text
