"""`workpools worker start`: run a process worker until SIGTERM/SIGINT, then drain and exit 0.

The CLI imports this module to build its parser (`add_arguments`) for every command, so only
`run_worker` imports the client, the worker and asyncio: `workpools --help` stays fast.
"""

from __future__ import annotations

import argparse

from workpools.api.meta import HEARTBEAT_INTERVAL_DEFAULT


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pool", required=True, help="the WorkPool to serve")
    parser.add_argument(
        "--queue",
        action="append",
        default=[],
        dest="queues",
        help="a queue to serve (repeatable); default: every queue of the pool",
    )
    parser.add_argument("--limit", type=int, default=None, help="most runs at once on this worker")
    parser.add_argument("--name", default=None, help="worker name (default: the host name)")
    parser.add_argument(
        "--heartbeat-interval",
        type=int,
        default=HEARTBEAT_INTERVAL_DEFAULT,
        help=f"seconds between heartbeats (default {HEARTBEAT_INTERVAL_DEFAULT})",
    )
    parser.add_argument(
        "--grace",
        type=float,
        default=30.0,
        help="on SIGTERM, seconds running runs may take to finish before they are stopped",
    )


async def serve(args: argparse.Namespace) -> None:
    import asyncio
    import signal
    import socket

    from workpools.client.transport import Transport
    from workpools.worker.process import ProcessWorker

    transport = await Transport.connect(getattr(args, "kubeconfig", None), getattr(args, "context", None))
    try:
        worker = ProcessWorker(
            transport,
            namespace=getattr(args, "namespace", None) or transport.namespace,
            pool=args.pool,
            name=args.name or socket.gethostname().lower(),
            queues=args.queues,
            limit=args.limit,
            interval=args.heartbeat_interval,
            grace=args.grace,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await worker.serve(stop)
    finally:
        await transport.close()


def run_worker(args: argparse.Namespace) -> int:
    import asyncio
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(serve(args))
    return 0
