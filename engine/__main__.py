"""``python -m engine {what,stop} --address ADDR``: what the engine keeps on a Ray cluster
you joined, and removing it.

A MapReduce job on a cluster you joined (``--address``) leaves the engine's supervisor
(the detached ``WorkerPool`` actor, no CPU), one standby ``MapReduceMaster`` process (no
CPU), its warm workers (a CPU per task slot, each exits after a minute unused) and one spare
worker (no CPU) on it, so that the next job starts at once.  ``what`` lists them; ``stop``
stops them all (the next job starts them again).  Errors print one line and exit 1.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    """Run the command; see ``--help``."""
    parser = argparse.ArgumentParser(prog="python -m engine", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["what", "stop"], help="what: list the engine's actors; stop: stop them")
    parser.add_argument("--address", default="auto",
                        help="the cluster: 'auto' (started with `ray start --head` on this machine, the default), "
                             "host:port or ray://host:port")
    args = parser.parse_args(argv)
    try:
        import ray

        import engine
        from engine.runtime.supervisor import NAMESPACE, POOL_NAME

        engine.connect(address=args.address, warm=False)
        try:
            try:
                pool = ray.get_actor(POOL_NAME, namespace=NAMESPACE)
            except ValueError:
                print("the engine keeps nothing on this cluster")
                return 0
            members = ray.get(pool.members.remote(), timeout=30)
            print(f"supervisor {POOL_NAME}; master processes: {members['masters']}; "
                  f"free workers: {len(members['free'])}; leased workers: {len(members['leased'])}; "
                  f"spare workers: {len(members['spares'])}")
            if args.command == "stop":
                engine.shutdown()
                print("stopped")
        finally:
            if ray.is_initialized():
                from engine.cluster import disconnect

                disconnect()
    except Exception as error:  # one line, no traceback
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        print(f"error: {message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
