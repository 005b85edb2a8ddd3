from .app import build
from .settings import Settings


def main() -> None:
    runtime = build(Settings())
    runtime.run()


if __name__ == "__main__":
    main()
