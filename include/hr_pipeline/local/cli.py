"""``hr-pipeline``: the local pipeline from a checkout.

hr-pipeline demo [--data DIR]          the whole pipeline on DIR, into .local/warehouse.db
hr-pipeline up|down|status [...]       the local Airflow stack (UI and REST API)
hr-pipeline azurite start|stop|status|port [DATA_DIR] [PORT]
hr-pipeline env [--blob-port N ...]    write .local/airflow.env
"""

from __future__ import annotations

import sys

COMMANDS = ("demo", "up", "down", "status", "azurite", "env")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] not in COMMANDS:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    command, rest = args[0], args[1:]
    if command == "demo":
        from hr_pipeline.local import demo

        return demo.main(rest)
    if command == "azurite":
        from hr_pipeline.local import azurite

        return azurite.main(rest)
    if command == "env":
        from hr_pipeline.local import env

        return env.main(rest)
    from hr_pipeline.local import stack

    return stack.main([command, *rest])


if __name__ == "__main__":
    raise SystemExit(main())
