"""``python -m telemetry`` runs the same CLI as ``builder``."""

from telemetry.cli import main

if __name__ == "__main__":
    main()
