import sys

from .app import build
from .settings import Settings
from .tokens import SigningKeyError


def main() -> None:
    try:
        runtime = build(Settings())
    except SigningKeyError as exc:
        sys.exit(f"identity cannot start: {exc}")
    runtime.run()


if __name__ == "__main__":
    main()
