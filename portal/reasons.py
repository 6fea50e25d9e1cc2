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
# The reasons the portal stores (in English), shown in the reader's language.
PORTAL = {SUBMITTED: N_("submitted"), STOPPED_BY_YOU: N_("stopped by you"),
          BALANCE_EXHAUSTED: N_("balance exhausted"), CULLED: N_("stopped after being idle"),
          DRAINED: N_("its node is draining")}

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
}
UNITS = {"cpu": N_("CPU"), "memory": N_("MiB of memory")}


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
    """What the scheduler writes into ``Task.reason`` for a pending task."""
    return json.dumps({"code": code, "params": dict(params)}, sort_keys=True)


def loads(text):
    """(code, params) from ``Task.reason``, or None for a plain sentence."""
    if not text.startswith("{"):
        return None
    data = json.loads(text)
    return data["code"], data["params"]
