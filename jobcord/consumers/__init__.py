"""How work runs: device discovery, warm pinned child processes that fetch and run their own
attempts, hard timeouts, result upload, crash recovery."""

from jobcord.scheduler.loader import load_app

from .devices import Device, discover_devices, pinning_env, select_devices
from .worker import Consumer, ConsumerConfig, StartupFailed, run_consumer, served_queues

__all__ = [
    "Consumer",
    "ConsumerConfig",
    "Device",
    "StartupFailed",
    "discover_devices",
    "load_app",
    "pinning_env",
    "run_consumer",
    "select_devices",
    "served_queues",
]
