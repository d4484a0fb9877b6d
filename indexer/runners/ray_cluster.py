"""Reaching the Ray cluster of `--runner ray`: Ray Data required, a local one on loopback only, what it holds."""

from __future__ import annotations

import logging
import os

from spyglass.search.errors import ConfigError

from ..scan import FoundFile

# Ray's switch for a single-node cluster that binds to loopback only (its default on macOS and
# Windows); read by the driver when it picks the node's address, and by the raylet it starts.
_LOOPBACK_ONLY = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def require_ray():
    """The ray module, or a clear error naming the extra to install."""
    try:
        import ray
        import ray.data  # noqa: F401 - Ray Data is the part the runner uses
    except ImportError:
        raise ConfigError("--runner ray needs Ray Data, which is not installed",
                          "pip install 'spyglass[ray]', or use --runner local") from None
    return ray


def connect(ray, address: str) -> bool:
    """Join the cluster at `address` or, with none, start one on this machine for the run;
    returns whether this process started it (and so shuts it down). Ray already running in
    this process is used as it is."""
    started = False
    if not ray.is_initialized():
        options = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
        try:
            if address:
                ray.init(address=address, **options)
            else:
                start_local_ray(ray, **options)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ConfigError(f"could not reach the Ray cluster at {address or 'this machine'}: {exc}",
                              "start it with `ray start --head`, or check SPYGLASS_RAY_ADDRESS / "
                              "--address (auto, or ray://host:10001)") from None
        started = True
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # the driver's own bar counts files
    logging.getLogger("ray.data").setLevel(logging.ERROR)  # its notices would break the bar
    return started


def start_local_ray(ray, **options) -> None:
    """Start a Ray for this run that listens on 127.0.0.1 only, never on the node's network
    address: nothing but this machine can attach to it."""
    import ray._private.ray_constants as constants

    saved_env, saved_constant = os.environ.get(_LOOPBACK_ONLY), getattr(constants, "ENABLE_RAY_CLUSTER", None)
    os.environ[_LOOPBACK_ONLY] = "0"  # the raylet and its workers inherit it
    constants.ENABLE_RAY_CLUSTER = False  # this driver read it when ray was imported
    try:
        ray.init(**options)
    finally:
        if saved_env is None:
            os.environ.pop(_LOOPBACK_ONLY, None)
        else:
            os.environ[_LOOPBACK_ONLY] = saved_env
        if saved_constant is not None:
            constants.ENABLE_RAY_CLUSTER = saved_constant


def describe(ray) -> str:
    """'2 nodes, 16 CPUs, 8 GPUs'."""
    resources = ray.cluster_resources()
    nodes = sum(1 for node in ray.nodes() if node.get("Alive"))
    return (f"{nodes} node{'s' * (nodes != 1)}, {int(resources.get('CPU', 0))} CPUs, "
            f"{int(resources.get('GPU', 0))} GPUs")


def encoder_plan(ray, configured: int | None) -> tuple[int, float]:
    """(actors, GPUs per actor): one actor per GPU of the cluster, or SPYGLASS_RAY_ENCODERS."""
    gpus = int(ray.cluster_resources().get("GPU", 0))
    return configured or max(1, gpus), (1.0 if gpus else 0.0)


def check_shared_paths(ray, sample: FoundFile) -> None:
    """Every node sees this file as the driver does; else the run stops before embedding anything."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    stat = ray.remote(num_cpus=0)(_stat)
    checks = {node["NodeManagerAddress"]: stat.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
        node["NodeID"], soft=False)).remote(sample.path)
        for node in ray.nodes() if node.get("Alive")}
    for address, ref in checks.items():
        seen = ray.get(ref)
        if seen != (sample.size, sample.mtime_ns):
            what = seen if isinstance(seen, str) else f"size {seen[0]}, mtime {seen[1]}"
            raise ConfigError(
                f"Ray node {address} does not see {sample.path} as this machine does ({what}); "
                "workers read media by the path the driver scanned",
                "mount the library at the same path on every node (see README, Ray runner)")


def _stat(path: str) -> tuple[int, int] | str:
    try:
        facts = os.stat(path)
    except OSError as exc:
        return f"{type(exc).__name__}: {exc.strerror}"
    return facts.st_size, facts.st_mtime_ns
