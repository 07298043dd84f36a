"""How work runs: device discovery, warm pinned child processes, execution with hard
timeouts, result upload, crash recovery."""

from scheduler.loader import load_app

from .devices import Device, discover_devices, pinning_env, select_devices
from .slots import ChildSlot, Outcome, StartupFailed
from .worker import Consumer, ConsumerConfig, run_consumer, served_queues

__all__ = [
    "ChildSlot",
    "Consumer",
    "ConsumerConfig",
    "Device",
    "Outcome",
    "StartupFailed",
    "discover_devices",
    "load_app",
    "pinning_env",
    "run_consumer",
    "select_devices",
    "served_queues",
]
