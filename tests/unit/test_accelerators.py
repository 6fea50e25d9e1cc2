"""The accelerator plugins on fake host trees with real device nodes (see tests/fake_hosts.py)."""

import logging
from types import SimpleNamespace

import pytest

from scheduler.accelerators import (
    Chip,
    ContainerArgs,
    discover_all,
    host_capacity,
    nvidia,
    plugin_for,
    sophgo,
)
from scheduler.accelerators.cdi import device_names
from tests.fake_hosts import (
    make_cpu_host,
    make_nvidia_host,
    make_sophgo_host,
    mknod,
    write_cdi_json,
    write_cdi_yaml,
    write_nvidia_smi,
)

# What `nvidia-ctk cdi generate` writes: keys sorted, the list at column 0, name last.
NVIDIA_CTK_YAML = """\
---
cdiVersion: 0.5.0
containerEdits:
  deviceNodes:
  - path: /dev/nvidiactl
  env:
  - NVIDIA_VISIBLE_DEVICES=void
  hooks:
  - args:
    - nvidia-cdi-hook
    - create-symlinks
    hookName: createContainer
    path: /usr/bin/nvidia-cdi-hook
devices:
- containerEdits:
    deviceNodes:
    - path: /dev/nvidia0
  name: "0"
- containerEdits:
    deviceNodes:
    - path: /dev/nvidia1
  name: "1"
- containerEdits:
    deviceNodes:
    - path: /dev/nvidia0
  name: GPU-955ef018-3bd9-5f27-80b3-fa20ee8d19c5
- containerEdits:
    deviceNodes:
    - path: /dev/nvidia0
    - path: /dev/nvidia1
  name: all
kind: nvidia.com/gpu
"""

# The hand-written style: 4-space indents, name first, comments.
HAND_WRITTEN_YAML = """\
cdiVersion: "0.6.0"
kind: 'nvidia.com/gpu'   # the vendor/class
devices:
    - name: "gpu0"
      containerEdits:
        deviceNodes:
            - path: /dev/nvidia0
      annotations:
        name: not-a-device
    - name: all
      containerEdits: {}
"""


# --- Sophgo -----------------------------------------------------------------------------


def test_two_sc7_cards_give_six_bm1684x_chips(tmp_path):
    nodes = make_sophgo_host(tmp_path, cards=[("0x1686", 3), ("0x1686", 3)], driver="0.4.9")
    chips = sophgo.discover(tmp_path)
    assert chips == [
        Chip(
            "sophgo.com/bm1684x",
            n,
            str(tmp_path / f"dev/bm-sophon{n}"),
            card=n // 3,
            driver="0.4.9",
        )
        for n in range(6)
    ]
    assert [chip.device for chip in chips] == [str(node) for node in nodes]


def test_one_bm1684_card_gives_three_bm1684_chips(tmp_path):
    make_sophgo_host(tmp_path, cards=[("0x1684", 3)])
    chips = sophgo.discover(tmp_path)
    assert [(chip.kind, chip.index, chip.card) for chip in chips] == [
        ("sophgo.com/bm1684", 0, 0),
        ("sophgo.com/bm1684", 1, 0),
        ("sophgo.com/bm1684", 2, 0),
    ]


def test_chip_id_text_as_the_real_driver_prints_it():
    # bm_proc prints a BM1684X (id 0x1686) as "0x1684x"; other drivers print the id itself.
    assert sophgo.kind_of("0x1684x\n") == "sophgo.com/bm1684x"
    assert sophgo.kind_of("0x1686\n") == "sophgo.com/bm1684x"
    assert sophgo.kind_of(" 0X1686 ") == "sophgo.com/bm1684x"
    assert sophgo.kind_of("1684") == "sophgo.com/bm1684"
    assert sophgo.kind_of("0x1682") is None
    assert sophgo.kind_of("0x1686x") is None
    assert sophgo.kind_of("") is None
    assert sophgo.kind_of("garbage") is None


def test_mixed_cards_and_an_unknown_card(tmp_path, caplog):
    make_sophgo_host(tmp_path, cards=[("0x1684x", 1), ("0x1682", 2), ("0x1684", 1)])
    chips = sophgo.discover(tmp_path)
    assert [(chip.kind, chip.index, chip.card) for chip in chips] == [
        ("sophgo.com/bm1684x", 0, 0),
        ("sophgo.com/bm1684", 3, 2),
    ]
    assert "unknown chip id '0x1682'" in caplog.text


def test_driver_version_line():
    assert sophgo.driver_version("release version:0.4.9   release date: 20231205\n") == "0.4.9"
    assert sophgo.driver_version("0.5.0\n") == "0.5.0"


def test_a_chip_without_a_real_device_node_is_skipped(tmp_path, caplog):
    make_sophgo_host(tmp_path, cards=[("0x1686", 3)])
    (tmp_path / "dev/bm-sophon0").unlink()
    (tmp_path / "dev/bm-sophon2").unlink()
    (tmp_path / "dev/bm-sophon2").write_text("not a device")
    with caplog.at_level(logging.WARNING):
        chips = sophgo.discover(tmp_path)
    assert [chip.index for chip in chips] == [1]
    assert "bm-sophon0 is missing or not a character device" in caplog.text
    assert "bm-sophon2 is missing or not a character device" in caplog.text


def test_no_driver_means_no_chips(tmp_path):
    assert sophgo.discover(tmp_path) == []
    assert discover_all(tmp_path) == {}


def test_container_args_number_the_renters_chips_from_zero(tmp_path):
    make_sophgo_host(tmp_path, cards=[("0x1686", 3), ("0x1686", 3)])
    chips = sophgo.discover(tmp_path)
    args = sophgo.container_args([chips[4], chips[5]], tmp_path)
    assert args == ContainerArgs(
        devices=[
            f"{tmp_path}/dev/bm-sophon4:/dev/bm-sophon0:rwm",
            f"{tmp_path}/dev/bm-sophon5:/dev/bm-sophon1:rwm",
            f"{tmp_path}/dev/bmdev-ctl:/dev/bmdev-ctl:rwm",
        ],
        mounts=[(f"{tmp_path}/opt/sophon", "/opt/sophon")],
        env={"HOURGLASS_CHIPS": "0,1"},
    )


def test_container_args_keep_the_order_given(tmp_path):
    make_sophgo_host(tmp_path, cards=[("0x1686", 3)])
    chips = sophgo.discover(tmp_path)
    args = sophgo.container_args([chips[2], chips[0]], tmp_path)
    assert args.devices[:2] == [
        f"{tmp_path}/dev/bm-sophon2:/dev/bm-sophon0:rwm",
        f"{tmp_path}/dev/bm-sophon0:/dev/bm-sophon1:rwm",
    ]


def test_no_runtime_no_mount_and_no_control_device_not_attached(tmp_path):
    make_sophgo_host(tmp_path, cards=[("0x1686", 1)], runtime=False, control=False)
    args = sophgo.container_args(sophgo.discover(tmp_path), tmp_path)
    assert args.devices == [f"{tmp_path}/dev/bm-sophon0:/dev/bm-sophon0:rwm"]
    assert args.mounts == []


def test_sophgo_metrics_read_each_chip_folder_and_its_sysfs_usage(tmp_path):
    make_sophgo_host(tmp_path, cards=[("0x1686", 3), ("0x1686", 3)])
    chips = sophgo.discover(tmp_path)
    (tmp_path / "proc/bmsophon/card1/bmsophon4/tpu_power").write_text("N/A\n")
    readings = sophgo.metrics([chips[0], chips[4]], tmp_path)
    assert readings == {
        0: {"temp_c": 40.0, "power_w": 10.0, "util_ratio": 0.0,
            "memory_total_bytes": (1 + 2 + 1) * 2**30},
        4: {"temp_c": 44.0, "util_ratio": 0.4, "memory_total_bytes": (5 + 2 + 1) * 2**30},
    }


def test_sophgo_metrics_parse_the_drivers_own_text(tmp_path):
    """The texts as ``bm_debug.c`` and ``bm_attr.c`` print them, on a chip with odd heaps."""
    make_sophgo_host(tmp_path, cards=[("0x1686", 1)])
    chip_dir = tmp_path / "proc/bmsophon/card0/bmsophon0"
    (chip_dir / "heap").write_text("heap0, size = 0x1A0000000, start_addr =0x100000000\n"
                                   "heap1, size = 0x0, start_addr =0x0\n"
                                   "heap2, size = 0x80000000, start_addr =0x300000000\n")
    (chip_dir / "chip_temp").write_text("51 C\n")
    usage = tmp_path / "sys/class/bm-sophon/bm-sophon0/device/npu_usage"
    usage.write_text("usage:86 avusage:12\n")
    reading = sophgo.metrics(sophgo.discover(tmp_path), tmp_path)[0]
    assert reading["memory_total_bytes"] == 0x1A0000000 + 0x80000000
    assert reading["util_ratio"] == 0.86 and reading["temp_c"] == 51.0
    usage.write_text("Please, set [Usage enable] to 1\n")  # the driver's usage timer is off
    assert "util_ratio" not in sophgo.metrics(sophgo.discover(tmp_path), tmp_path)[0]


def test_sophgo_metrics_leave_out_a_chip_the_host_says_nothing_about(tmp_path):
    make_sophgo_host(tmp_path, cards=[("0x1686", 1)])
    chips = sophgo.discover(tmp_path)
    for name in ("chip_temp", "tpu_power", "heap"):
        (tmp_path / "proc/bmsophon/card0/bmsophon0" / name).unlink()
    (tmp_path / "sys/class/bm-sophon/bm-sophon0/device/npu_usage").unlink()
    assert sophgo.metrics(chips, tmp_path) == {}


# --- NVIDIA -----------------------------------------------------------------------------


def test_nvidia_by_cdi_json(tmp_path):
    make_nvidia_host(tmp_path, gpus=2)
    write_cdi_json(tmp_path, ["1", "0", "GPU-955ef018", "0:0", "all"])
    chips = nvidia.discover(tmp_path)
    assert chips == [
        Chip("nvidia.com/gpu", 0, "nvidia.com/gpu=0"),
        Chip("nvidia.com/gpu", 1, "nvidia.com/gpu=1"),
    ]
    args = nvidia.container_args([chips[1]], tmp_path)
    assert args == ContainerArgs(devices=["nvidia.com/gpu=1"], env={"HOURGLASS_CHIPS": "0"})


def test_nvidia_by_cdi_yaml_as_nvidia_ctk_writes_it(tmp_path):
    write_cdi_yaml(tmp_path, NVIDIA_CTK_YAML, folder="var/run/cdi")
    chips = nvidia.discover(tmp_path)
    assert [chip.device for chip in chips] == ["nvidia.com/gpu=0", "nvidia.com/gpu=1"]


def test_cdi_yaml_written_by_hand(tmp_path):
    write_cdi_yaml(tmp_path, HAND_WRITTEN_YAML)
    assert device_names(tmp_path, "nvidia.com/gpu") == ["gpu0", "all"]
    assert nvidia.discover(tmp_path) == [Chip("nvidia.com/gpu", 0, "nvidia.com/gpu=gpu0")]


def test_cdi_specs_of_other_kinds_and_broken_specs_are_ignored(tmp_path, caplog):
    write_cdi_json(tmp_path, ["0"], kind="intel.com/gpu")
    (tmp_path / "etc/cdi/broken.json").write_text("{not json")
    (tmp_path / "etc/cdi/notes.txt").write_text("kind: nvidia.com/gpu")
    write_cdi_json(tmp_path, ["0", "all"], folder="var/run/cdi")
    write_cdi_yaml(tmp_path, NVIDIA_CTK_YAML, folder="var/run/cdi")
    assert device_names(tmp_path, "nvidia.com/gpu") == [
        "0",
        "all",
        "1",
        "GPU-955ef018-3bd9-5f27-80b3-fa20ee8d19c5",
    ]
    assert "broken.json skipped" in caplog.text


def test_nvidia_by_device_nodes(tmp_path):
    make_nvidia_host(tmp_path, gpus=2)
    (tmp_path / "dev/nvidia-modeset").write_text("")
    (tmp_path / "dev/nvidia7").write_text("not a device")
    chips = nvidia.discover(tmp_path)
    assert chips == [
        Chip("nvidia.com/gpu", 0, str(tmp_path / "dev/nvidia0")),
        Chip("nvidia.com/gpu", 1, str(tmp_path / "dev/nvidia1")),
    ]
    args = nvidia.container_args([chips[1]], tmp_path)
    assert args == ContainerArgs(
        devices=[
            f"{tmp_path}/dev/nvidia1:/dev/nvidia1:rwm",  # the driver needs the host's minor number
            f"{tmp_path}/dev/nvidiactl:/dev/nvidiactl:rwm",
            f"{tmp_path}/dev/nvidia-uvm:/dev/nvidia-uvm:rwm",
            f"{tmp_path}/dev/nvidia-uvm-tools:/dev/nvidia-uvm-tools:rwm",
        ],
        env={"HOURGLASS_CHIPS": "0"},
    )


def test_a_cdi_spec_without_numbered_gpus_falls_back_to_device_nodes(tmp_path):
    make_nvidia_host(tmp_path, gpus=1, control=False)
    write_cdi_json(tmp_path, ["all"])
    chips = nvidia.discover(tmp_path)
    assert chips == [Chip("nvidia.com/gpu", 0, str(tmp_path / "dev/nvidia0"))]
    assert nvidia.container_args(chips, tmp_path).devices == [
        f"{tmp_path}/dev/nvidia0:/dev/nvidia0:rwm"
    ]


def test_no_nvidia_means_no_chips_and_no_metrics(tmp_path):
    assert nvidia.discover(tmp_path) == []
    make_nvidia_host(tmp_path, gpus=1)
    assert nvidia.metrics(nvidia.discover(tmp_path), tmp_path) == {}  # no nvidia-smi


def test_nvidia_metrics_come_from_nvidia_smi_under_the_host_root(tmp_path):
    make_nvidia_host(tmp_path, gpus=3)
    write_nvidia_smi(tmp_path, "0, 37, 1024, 81559, 45, 71.52\n"
                               "1, [N/A], 0, 81559, 30, [Not Supported]\n"
                               "2, 100, 80000, 81559, 80, 690.00\n")
    chips = nvidia.discover(tmp_path)
    assert nvidia.metrics(chips[:2], tmp_path) == {
        0: {"util_ratio": 0.37, "memory_used_bytes": 1024 * 2**20,
            "memory_total_bytes": 81559 * 2**20, "temp_c": 45.0, "power_w": 71.52},
        1: {"memory_used_bytes": 0, "memory_total_bytes": 81559 * 2**20, "temp_c": 30.0},
    }
    asked = (tmp_path / "smi-args").read_text().split()
    assert asked == ["--query-gpu=index,utilization.gpu,memory.used,memory.total,"
                     "temperature.gpu,power.draw", "--format=csv,noheader,nounits"]


def test_a_failing_nvidia_smi_gives_no_metrics(tmp_path, caplog):
    make_nvidia_host(tmp_path, gpus=1)
    write_nvidia_smi(tmp_path, "", code=9)
    assert nvidia.metrics(nvidia.discover(tmp_path), tmp_path) == {}
    assert "nvidia-smi failed" in caplog.text


# --- the registry -----------------------------------------------------------------------


def test_discover_all_groups_chips_by_kind(tmp_path):
    make_sophgo_host(tmp_path, cards=[("0x1686", 3), ("0x1684", 3)])
    make_nvidia_host(tmp_path, gpus=2)
    found = discover_all(tmp_path)
    assert {kind: [chip.index for chip in chips] for kind, chips in found.items()} == {
        "sophgo.com/bm1684x": [0, 1, 2],
        "sophgo.com/bm1684": [3, 4, 5],
        "nvidia.com/gpu": [0, 1],
    }


def test_a_plugin_that_raises_is_skipped_and_the_others_still_report(tmp_path, caplog):
    def explode(host_root):
        raise RuntimeError("driver wedged")

    broken = SimpleNamespace(kind_names=("broken.example/x",), discover=explode)
    make_sophgo_host(tmp_path, cards=[("0x1686", 3)])
    found = discover_all(tmp_path, plugins=[broken, sophgo])
    assert list(found) == ["sophgo.com/bm1684x"]
    assert len(found["sophgo.com/bm1684x"]) == 3
    assert "accelerator plugin for broken.example/x failed; skipped" in caplog.text
    assert "driver wedged" in caplog.text


def test_plugin_for_a_kind():
    assert plugin_for("sophgo.com/bm1684") is sophgo
    assert plugin_for("sophgo.com/bm1684x") is sophgo
    assert plugin_for("nvidia.com/gpu") is nvidia
    with pytest.raises(KeyError):
        plugin_for("cpu")  # not an accelerator: see host_capacity


# --- CPU and memory ---------------------------------------------------------------------


def test_host_capacity_from_proc(tmp_path):
    make_cpu_host(tmp_path, cpus=6, mem_kib=16318480)
    assert host_capacity(tmp_path) == {"cpu": 6, "memory": 16318480 * 1024}


def test_fake_nodes_are_real_character_devices(tmp_path):
    node = mknod(tmp_path / "dev/x")
    assert node.is_char_device()
    assert node.stat().st_mode & 0o777 == 0o666
    assert node.read_bytes() == b""
