"""The container of each replica to start: what ``ContainerBackend.start`` is given.

A replica's container has its task's image, argv and environment, its spec's limits,
its chips (renumbered from 0 inside), a name on its task's network and its peers'
addresses; a training task's algorithm version is bound read-only at /code (its working
directory) and its dataset version read-only at /dataset; a notebook's replica runs
JupyterLab with its notebook's folders bound.
"""

import json
from dataclasses import replace
from pathlib import Path

from peewee import JOIN

from portal import notebook_folders, versions
from portal.models import (
    AlgorithmVersion,
    DatasetVersion,
    Node,
    NodeChip,
    Notebook,
    Replica,
    ReplicaChip,
    ResourceSpec,
    Subtask,
)
from scheduler.accelerators import Chip
from scheduler.backend import (
    SLURM_JOB_LABEL,
    ContainerSpec,
    StartFailed,
    attach_chips,
    network_name,
)

PIDS_LIMIT = 4096
JUPYTER_PORT = 8888


def hostname(subtask, replica):
    """A replica's name on its task's network, e.g. ``worker-1``."""
    return f"{subtask.role}-{replica.index}"


def jupyter_argv(replica_id, port=JUPYTER_PORT):
    """How a notebook replica's container starts JupyterLab: on every address of its task's
    network, on ``port``, under ``/nb/<replica id>/`` (where the notebook proxy forwards),
    in /code. The token comes from ``JUPYTER_TOKEN``, never from an argument (``ps`` shows
    those). ``--allow-root``: a renter's own image may run as root (ours runs as uid 1000)."""
    return ("jupyter-lab", "--ip=0.0.0.0", f"--port={port}", "--no-browser",
            f"--ServerApp.base_url=/nb/{replica_id}/", "--ServerApp.root_dir=/code",
            "--allow-root")


def jupyter_address(replica, state, instance):
    """``{"address": "IP:port"}`` where a notebook replica's JupyterLab answers, from its
    container's ``state``: its node's address and published port when it has one (another
    node), else its IP on its task's network; {} for other replicas."""
    if replica.task.kind != "notebook":
        return {}
    if replica.peer_port:
        return {"address": f"{replica.node.address}:{replica.peer_port}"}
    ip = state.addresses.get(network_name(instance, replica.task_id), "")
    return {"address": f"{ip}:{JUPYTER_PORT}" if ip else ""}


def container_specs(replicas, instance, local_url, host_root, data_root):
    """The containers of ``replicas`` (with their task, subtask and node), in order; for
    a replica that cannot start, the StartFailed saying why instead. Six queries for all
    of them, however many replicas and tasks.

    ``instance`` is the database's instance id (in every name); a replica on the node at
    ``local_url`` gets its chips' host paths under ``host_root`` (a Slurm node: under its
    own); ``data_root`` holds the
    notebooks' folders and the versions (None: what needs them does not start)."""
    specs = {spec.id: spec for spec in ResourceSpec.select().where(
        ResourceSpec.id.in_({r.subtask.spec_id for r in replicas}))}
    peers = {}
    for peer in (Replica.select(Replica, Subtask, Node).join(Subtask).switch(Replica)
                 .join(Node, JOIN.LEFT_OUTER)
                 .where(Replica.task.in_({r.task_id for r in replicas}))
                 .order_by(Subtask.id, Replica.index)):
        peers.setdefault(peer.task_id, []).append(peer)
    chips = {}
    for row in (NodeChip.select(NodeChip, ReplicaChip.replica).join(ReplicaChip)
                .where(ReplicaChip.replica.in_([r.id for r in replicas]))
                .order_by(NodeChip.kind, ReplicaChip.slot)):
        chips.setdefault(row.replicachip.replica_id, []).append(
            Chip(row.kind, row.index, row.device, row.card, row.driver))
    labs = {nb.id: nb for nb in Notebook.select().where(Notebook.id.in_(
        {r.task.notebook_id for r in replicas if r.task.kind == "notebook"}))}
    owners = [r.task for r in replicas if r.task.kind != "notebook"] + list(labs.values())
    codes = _rows(AlgorithmVersion, {o.algorithm_version_id for o in owners})
    data = _rows(DatasetVersion, {o.dataset_version_id for o in owners})
    out = []
    for r in replicas:
        root = (Path(r.node.host_root) if r.node.host_root
                else host_root if r.node.url == local_url else Path("/"))
        spec = _container(r, specs[r.subtask.spec_id], peers[r.task_id], chips.get(r.id, []),
                          instance, root)
        try:
            if r.task.kind == "notebook":
                spec = _notebook(spec, r, labs.get(r.task.notebook_id), data_root, data)
            else:
                spec = _versions(spec, codes.get(r.task.algorithm_version_id),
                                 data.get(r.task.dataset_version_id), data_root)
        except StartFailed as why:
            spec = why
        out.append(spec)
    return out


def _rows(model, ids):
    """``{id: row}`` of ``model`` for ``ids`` (None left out)."""
    ids = {i for i in ids if i is not None}
    return {row.id: row for row in model.select().where(model.id.in_(ids))} if ids else {}


def _versions(container, code, dataset, data_root):
    """``container`` with a training task's versions bound read-only: ``code`` (an
    AlgorithmVersion, or None) at /code, its working directory, ``dataset`` at /dataset.
    Raises StartFailed when their files are not there."""
    if code is None and dataset is None:
        return container
    if data_root is None:
        raise StartFailed("Hourglass has no data folder for versions (HOURGLASS_DATA)")
    binds = versions.mounts(data_root, code, dataset)
    for host, inside, _read_only in binds:
        if not Path(host).is_dir():
            raise StartFailed(f"the files of {inside} are missing")
    return replace(container, mounts=(*container.mounts, *binds),
                   working_dir="/code" if code is not None else container.working_dir)


def _container(replica, spec, everyone, chips, instance, chip_root):
    """A replica's container. Its peers are names on its task's network when the task
    runs on one node; when it spans nodes, each replica also has a node port published
    (``HOURGLASS_PORT``, the same number inside) and its peers are ``address:port``."""
    task, subtask = replica.task, replica.subtask
    rank = [r.id for r in everyone].index(replica.id)
    ports, own = (), {}
    if replica.peer_port:
        peers = [f"{r.node.address if r.node_id else ''}:{r.peer_port}" for r in everyone]
        ports, own = (replica.peer_port,), {"HOURGLASS_PORT": str(replica.peer_port)}
    else:
        peers = [hostname(r.subtask, r) for r in everyone]
    env = {**json.loads(task.env),
           "HOURGLASS_TASK_ID": str(task.id), "HOURGLASS_ROLE": subtask.role,
           "HOURGLASS_REPLICA_INDEX": str(replica.index),
           "HOURGLASS_PEERS": ",".join(peers), **own,
           "WORLD_SIZE": str(len(everyone)), "RANK": str(rank)}
    name = hostname(subtask, replica)
    container = ContainerSpec(
        instance=instance, replica=replica.id, task=task.id, subtask=subtask.id,
        user=task.user_id,
        image=task.image, argv=tuple(json.loads(task.argv)), env=env,
        cpu_millis=spec.cpu_millis, memory_mib=spec.memory_mib, pids_limit=PIDS_LIMIT,
        network=network_name(instance, task.id), hostname=name, aliases=(name,),
        ports=ports,
        # the Epilog of a Slurm node stops the containers of the job that ended there
        labels={SLURM_JOB_LABEL: str(task.slurm_job)} if task.slurm_job else {})
    return attach_chips(container, chips, chip_root) if chips else container


def _notebook(container, replica, notebook, data_root, data):
    """``container`` made a notebook's: JupyterLab with the run's token in its
    environment, working in /code, the notebook's folders (under ``data_root``) bound.
    Raises StartFailed."""
    if notebook is None:
        raise StartFailed("its notebook is gone")
    if data_root is None:
        raise StartFailed("Hourglass has no data folder for notebooks (HOURGLASS_DATA)")
    try:
        binds = notebook_folders.mounts(data_root, notebook,
                                        data.get(notebook.dataset_version_id))
    except ValueError as error:
        raise StartFailed(str(error)) from None
    return replace(container, argv=jupyter_argv(replica.id, replica.peer_port or JUPYTER_PORT),
                   env={**container.env, "JUPYTER_TOKEN": replica.task.secret},
                   working_dir="/code", mounts=(*container.mounts, *binds))
