from .app import build
from .settings import Settings


def main() -> None:
    build(Settings()).run()


if __name__ == "__main__":
    main()
